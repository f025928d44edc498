/* The part of the simulated libascendcl.so that really answers: device queries.
 *
 * Devices come from the simulator's state file (env NPU_SIM_STATE, default
 * /etc/npu-sim/state.json; format in tests/sim/state.py), read at every call
 * because tests inject faults by rewriting it. A die counts only while its
 * device node <NPU_SIM_DEV_DIR or /dev>/davinci<phy_id> exists. ACL device
 * ids are the positions of the present dies in logic-id order, narrowed by
 * ASCEND_RT_VISIBLE_DEVICES as the vendor runtime does. The SoC name is the
 * state's optional top-level "soc_name", else "Ascend" + "name"; the CANN version
 * comes from the ascend_toolkit_install.info of the toolkit this library is in.
 *
 * Beyond the queries, just enough device management for torch_npu's lazy device
 * init (torch.npu.set_device, mem_get_info, get_device_properties): contexts and
 * streams are opaque handles, synchronizing is instant since nothing ever runs,
 * and device memory cannot be allocated (torch raises OutOfMemoryError).
 * Everything else in the library is a generated stub returning an error code.
 * Signatures and error codes follow the public AscendCL API reference. */
#define _GNU_SOURCE /* dladdr */
#include <ctype.h>
#include <dlfcn.h>
#include <glob.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "sim_stub.h"

typedef int aclError;

#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_RT_PARAM_INVALID 107000
#define ACL_ERROR_RT_INVALID_DEVICEID 107001
#define ACL_ERROR_RT_CONTEXT_NULL 107002
#define ACL_ERROR_RT_FEATURE_NOT_SUPPORT 207000
#define ACL_ERROR_RT_MEMORY_ALLOCATION 207001
#define ACL_ERROR_RT_NO_DEVICE 207004

#define ACL_PKG_VERSION_MAX_SIZE 128
#define ACL_PKG_VERSION_PARTS_MAX_SIZE 64
#define ACL_PKG_NAME_DRIVER 7 /* last of aclCANNPackageName: CANN, RUNTIME, ..., DRIVER */

typedef struct {
    char version[ACL_PKG_VERSION_MAX_SIZE];
    char majorVersion[ACL_PKG_VERSION_PARTS_MAX_SIZE];
    char minorVersion[ACL_PKG_VERSION_PARTS_MAX_SIZE];
    char releaseVersion[ACL_PKG_VERSION_PARTS_MAX_SIZE];
    char patchVersion[ACL_PKG_VERSION_PARTS_MAX_SIZE];
    char reserved[ACL_PKG_VERSION_MAX_SIZE];
} aclCANNPackageVersion;

#define MAX_DEVICES 64
#define MAX_DEPTH 32

struct sim_device {
    long phy_id, logic_id;
    long hbm_used_mb, hbm_total_mb; /* -1 when the state has no HBM (310P) */
};

struct sim_node {
    char name[64]; /* npu-smi's Name, e.g. "910B3" */
    char soc[64];  /* optional "soc_name", for chips whose SoC name is not "Ascend" + name */
    int count;
    struct sim_device dev[MAX_DEVICES];
};

static int initialized;
static __thread int current_device = -1;
static char soc_name[80];

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap + 1);
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static const char *skip_ws(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* A minimal JSON walk: every object holding a "phy_id" key is a die, whatever
 * the key order; top-level "name" and "soc_name" name the chip. Enough for the
 * state file, not a general parser. */
static void parse_state(const char *p, struct sim_node *node)
{
    struct sim_device stack[MAX_DEPTH];
    int has_phy[MAX_DEPTH];
    int depth = 0;

    memset(node, 0, sizeof *node);
    while (*p) {
        if (*p == '{') {
            if (depth >= 0 && depth < MAX_DEPTH) { /* deeper (or malformed) levels are skipped */
                stack[depth] = (struct sim_device){-1, -1, -1, -1};
                has_phy[depth] = 0;
            }
            depth++;
        } else if (*p == '}') {
            depth--;
            if (depth >= 0 && depth < MAX_DEPTH && has_phy[depth] && node->count < MAX_DEVICES)
                node->dev[node->count++] = stack[depth];
        } else if (*p == '"') {
            const char *key = ++p;
            while (*p && *p != '"')
                p += (*p == '\\' && p[1]) ? 2 : 1;
            size_t len = (size_t)(p - key);
            if (*p)
                p++;
            const char *v = skip_ws(p);
            if (*v != ':' || depth < 1 || depth > MAX_DEPTH)
                continue; /* a string value, not a key */
            v = skip_ws(v + 1);
            struct sim_device *d = &stack[depth - 1];
#define IS_KEY(k) (len == sizeof(k) - 1 && memcmp(key, k, len) == 0)
            if (IS_KEY("phy_id")) {
                d->phy_id = strtol(v, NULL, 10);
                has_phy[depth - 1] = 1;
            } else if (IS_KEY("logic_id")) {
                d->logic_id = strtol(v, NULL, 10);
            } else if (IS_KEY("hbm_mb") && *v == '[') {
                char *end;
                d->hbm_used_mb = strtol(v + 1, &end, 10);
                end = (char *)skip_ws(end);
                if (*end == ',')
                    d->hbm_total_mb = strtol(end + 1, NULL, 10);
            } else if ((IS_KEY("name") || IS_KEY("soc_name")) && depth == 1 && *v == '"') {
                char *out = IS_KEY("name") ? node->name : node->soc;
                size_t i = 0;
                for (const char *c = v + 1; *c && *c != '"' && i < sizeof node->name - 1; c++)
                    out[i++] = *c;
                out[i] = '\0';
            }
#undef IS_KEY
            p = v; /* the value is scanned next (it may open an object) */
            continue;
        }
        p++;
    }
}

static int by_logic_id(const void *a, const void *b)
{
    long x = ((const struct sim_device *)a)->logic_id, y = ((const struct sim_device *)b)->logic_id;
    return (x > y) - (x < y);
}

/* The devices this process may use, in ACL device-id order; -1 when there is
 * no state file (no driver on this host). */
static int load_devices(struct sim_node *node)
{
    const char *path = getenv("NPU_SIM_STATE");
    char *text = read_file(path && *path ? path : "/etc/npu-sim/state.json");
    if (!text)
        return -1;
    parse_state(text, node);
    free(text);

    const char *dev_dir = getenv("NPU_SIM_DEV_DIR");
    if (!dev_dir || !*dev_dir)
        dev_dir = "/dev";
    int present = 0;
    for (int i = 0; i < node->count; i++) {
        char dev_path[4096];
        snprintf(dev_path, sizeof dev_path, "%s/davinci%ld", dev_dir, node->dev[i].phy_id);
        if (access(dev_path, F_OK) == 0)
            node->dev[present++] = node->dev[i];
    }
    node->count = present;
    qsort(node->dev, (size_t)present, sizeof node->dev[0], by_logic_id);

    /* ASCEND_RT_VISIBLE_DEVICES=2,3 exposes present devices 2 and 3 as 0 and 1;
     * the list ends at the first entry that is not a valid id. */
    const char *visible = getenv("ASCEND_RT_VISIBLE_DEVICES");
    if (visible) {
        struct sim_device all[MAX_DEVICES];
        memcpy(all, node->dev, sizeof all);
        node->count = 0;
        while (isdigit((unsigned char)*visible) && node->count < MAX_DEVICES) {
            char *end;
            long id = strtol(visible, &end, 10);
            if (id >= present)
                break;
            node->dev[node->count++] = all[id];
            if (*end != ',')
                break;
            visible = end + 1;
        }
    }
    return node->count;
}

static aclError fail(aclError code, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s (error %d)", what, code);
    sim_set_error(msg);
    return code;
}

/* Newer runtimes count aclInit calls instead of refusing a second one. */
aclError aclInit(const char *configPath)
{
    (void)configPath;
    initialized++;
    return ACL_SUCCESS;
}

aclError aclFinalize(void)
{
    initialized = 0; /* releases every reference, as the vendor's does */
    return ACL_SUCCESS;
}

aclError aclrtGetDeviceCount(uint32_t *count)
{
    struct sim_node node;
    if (!count)
        return fail(ACL_ERROR_RT_PARAM_INVALID, "aclrtGetDeviceCount: count is NULL");
    int n = load_devices(&node);
    *count = n > 0 ? (uint32_t)n : 0;
    return n > 0 ? ACL_SUCCESS : fail(ACL_ERROR_RT_NO_DEVICE, "aclrtGetDeviceCount: no NPU device found");
}

aclError aclrtSetDevice(int32_t deviceId)
{
    struct sim_node node;
    int n = load_devices(&node);
    if (n <= 0)
        return fail(ACL_ERROR_RT_NO_DEVICE, "aclrtSetDevice: no NPU device found");
    if (deviceId < 0 || deviceId >= n)
        return fail(ACL_ERROR_RT_INVALID_DEVICEID, "aclrtSetDevice: invalid device id");
    current_device = deviceId;
    return ACL_SUCCESS;
}

aclError aclrtGetDevice(int32_t *deviceId)
{
    if (!deviceId)
        return fail(ACL_ERROR_RT_PARAM_INVALID, "aclrtGetDevice: deviceId is NULL");
    if (current_device < 0)
        return ACL_ERROR_RT_CONTEXT_NULL; /* torch_npu probes this; not an error worth a message */
    *deviceId = current_device;
    return ACL_SUCCESS;
}

aclError aclrtResetDevice(int32_t deviceId)
{
    if (deviceId == current_device)
        current_device = -1;
    return ACL_SUCCESS;
}

/* One opaque context per device; its address is the handle. */
static char contexts[MAX_DEVICES];

aclError aclrtGetCurrentContext(void **context)
{
    if (!context)
        return fail(ACL_ERROR_RT_PARAM_INVALID, "aclrtGetCurrentContext: context is NULL");
    if (current_device < 0)
        return ACL_ERROR_RT_CONTEXT_NULL;
    *context = &contexts[current_device];
    return ACL_SUCCESS;
}

aclError aclrtSetCurrentContext(void *context)
{
    char *c = context;
    if (c < contexts || c >= contexts + MAX_DEVICES)
        return fail(ACL_ERROR_RT_PARAM_INVALID, "aclrtSetCurrentContext: unknown context");
    current_device = (int)(c - contexts);
    return ACL_SUCCESS;
}

/* Streams are handles that never carry work (launches are stubs that fail). */
static char streams[4096];
static int next_stream;

aclError aclrtCreateStreamWithConfig(void **stream, uint32_t priority, uint32_t flag)
{
    (void)priority;
    (void)flag;
    if (!stream)
        return fail(ACL_ERROR_RT_PARAM_INVALID, "aclrtCreateStream: stream is NULL");
    if (current_device < 0)
        return fail(ACL_ERROR_RT_CONTEXT_NULL, "aclrtCreateStream: no current device");
    *stream = &streams[__atomic_fetch_add(&next_stream, 1, __ATOMIC_RELAXED) % (int)sizeof streams];
    return ACL_SUCCESS;
}

aclError aclrtCreateStream(void **stream)
{
    return aclrtCreateStreamWithConfig(stream, 0, 0);
}

aclError aclrtDestroyStream(void *stream)
{
    (void)stream;
    return ACL_SUCCESS;
}

aclError aclrtDestroyStreamForce(void *stream)
{
    (void)stream;
    return ACL_SUCCESS;
}

/* Nothing is ever queued, so there is nothing to wait for. */
aclError aclrtSynchronizeDevice(void)
{
    return current_device < 0 ? fail(ACL_ERROR_RT_CONTEXT_NULL, "aclrtSynchronizeDevice: no current device")
                              : ACL_SUCCESS;
}

aclError aclrtSynchronizeDeviceWithTimeout(int32_t timeout)
{
    (void)timeout;
    return aclrtSynchronizeDevice();
}

/* The out-of-memory code: torch_npu turns it into torch.OutOfMemoryError, a clean
 * failure (other codes reach paths that crash). */
static aclError no_memory(void **ptr, const char *what)
{
    if (ptr)
        *ptr = NULL;
    return fail(ACL_ERROR_RT_MEMORY_ALLOCATION, what);
}

aclError aclrtMalloc(void **devPtr, size_t size, int policy)
{
    (void)size;
    (void)policy;
    return no_memory(devPtr, "aclrtMalloc: a simulated NPU has no device memory");
}

aclError aclrtMallocAlign32(void **devPtr, size_t size, int policy)
{
    (void)size;
    (void)policy;
    return no_memory(devPtr, "aclrtMallocAlign32: a simulated NPU has no device memory");
}

/* The state's soc_name, else "Ascend" + npu-smi's name (Ascend910B3); NULL without
 * a state file. torch_npu refuses device init for a name it does not know. */
const char *aclrtGetSocName(void)
{
    struct sim_node node;
    if (load_devices(&node) < 0)
        return NULL;
    if (node.soc[0])
        snprintf(soc_name, sizeof soc_name, "%s", node.soc);
    else if (node.name[0])
        snprintf(soc_name, sizeof soc_name, "%s%s", strncmp(node.name, "Ascend", 6) == 0 ? "" : "Ascend",
                 node.name);
    else
        return NULL;
    return soc_name;
}

/* attr (HBM, DDR, ...) is ignored: a simulated die has only its HBM. */
aclError aclrtGetMemInfo(int attr, size_t *free_bytes, size_t *total_bytes)
{
    struct sim_node node;
    (void)attr;
    if (!free_bytes || !total_bytes)
        return fail(ACL_ERROR_RT_PARAM_INVALID, "aclrtGetMemInfo: NULL output");
    if (current_device < 0)
        return fail(ACL_ERROR_RT_CONTEXT_NULL, "aclrtGetMemInfo: no current device");
    if (load_devices(&node) <= current_device)
        return fail(ACL_ERROR_RT_INVALID_DEVICEID, "aclrtGetMemInfo: device is gone");
    struct sim_device *d = &node.dev[current_device];
    long total = d->hbm_total_mb > 0 ? d->hbm_total_mb : 0;
    long used = d->hbm_used_mb > 0 ? d->hbm_used_mb : 0;
    *total_bytes = (size_t)total << 20;
    *free_bytes = (size_t)(total > used ? total - used : 0) << 20;
    return ACL_SUCCESS;
}

const char *aclGetRecentErrMsg(void)
{
    return sim_recent_error();
}

/* version= of the toolkit's ascend_*_install.info, found from where this library
 * was loaded (<home>/lib64 or <home>/<arch>-linux/lib64), as the vendor's does. */
static int toolkit_version(char *out, size_t len)
{
    static const char *patterns[] = {"%s/ascend_toolkit_install.info", "%s/*/ascend_toolkit_install.info",
                                     "%s/ascend_*_install.info", "%s/*/ascend_*_install.info"};
    Dl_info info;
    char dir[4096], pattern[4200], line[256];
    if (!dladdr((void *)toolkit_version, &info) || !info.dli_fname)
        return -1;
    snprintf(dir, sizeof dir, "%s", info.dli_fname);
    char *home = dirname(dirname(dir));
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        glob_t g;
        snprintf(pattern, sizeof pattern, patterns[i], home);
        if (glob(pattern, 0, NULL, &g) != 0)
            continue;
        FILE *f = fopen(g.gl_pathv[0], "r");
        globfree(&g);
        while (f && fgets(line, sizeof line, f)) {
            if (strncmp(line, "version=", 8) == 0) {
                line[strcspn(line, "\r\n")] = '\0';
                snprintf(out, len, "%s", line + 8);
                fclose(f);
                return 0;
            }
        }
        if (f)
            fclose(f);
    }
    return -1;
}

/* Every package reports the toolkit's version; the driver's is not the runtime's to tell. */
aclError aclsysGetCANNVersion(int name, aclCANNPackageVersion *version)
{
    if (!version || name < 0 || name > ACL_PKG_NAME_DRIVER)
        return fail(ACL_ERROR_INVALID_PARAM, "aclsysGetCANNVersion: invalid argument");
    if (name == ACL_PKG_NAME_DRIVER)
        return sim_unsupported("aclsysGetCANNVersion(ACL_PKG_NAME_DRIVER)", ACL_ERROR_RT_FEATURE_NOT_SUPPORT);
    memset(version, 0, sizeof *version);
    if (toolkit_version(version->version, sizeof version->version) != 0)
        return fail(ACL_ERROR_INVALID_PARAM, "aclsysGetCANNVersion: no ascend_toolkit_install.info");
    /* "8.3.RC1" -> 8, 3, RC1, 0: missing parts are "0". */
    char *parts[] = {version->majorVersion, version->minorVersion, version->releaseVersion,
                     version->patchVersion};
    const char *p = version->version;
    for (int i = 0; i < 4; i++) {
        size_t n = *p ? strcspn(p, ".") : 0;
        snprintf(parts[i], ACL_PKG_VERSION_PARTS_MAX_SIZE, "%.*s", (int)(n ? n : 1), n ? p : "0");
        p += n + (p[n] == '.');
    }
    return ACL_SUCCESS;
}

aclError aclsysGetVersionStr(const char *pkgName, char *versionStr)
{
    if (!pkgName || !versionStr)
        return fail(ACL_ERROR_INVALID_PARAM, "aclsysGetVersionStr: NULL argument");
    if (strcasecmp(pkgName, "driver") == 0)
        return sim_unsupported("aclsysGetVersionStr(driver)", ACL_ERROR_RT_FEATURE_NOT_SUPPORT);
    if (toolkit_version(versionStr, ACL_PKG_VERSION_MAX_SIZE) != 0)
        return fail(ACL_ERROR_INVALID_PARAM, "aclsysGetVersionStr: no ascend_toolkit_install.info");
    return ACL_SUCCESS;
}

/* The real part of the simulated libacl_op_compiler.so: torch_npu's device init
 * reads and sets compile options. Every option reads "" (the vendor's defaults
 * apply) and setting one is accepted and forgotten: nothing is ever compiled.
 * Everything else in the library is a generated stub returning an error code. */
#include <stddef.h>

typedef int aclError;

#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define OPTION_SIZE 64

size_t aclGetCompileoptSize(int opt)
{
    (void)opt;
    return OPTION_SIZE;
}

aclError aclGetCompileopt(int opt, char *value, size_t length)
{
    (void)opt;
    if (!value || length == 0)
        return ACL_ERROR_INVALID_PARAM;
    value[0] = '\0';
    return ACL_SUCCESS;
}

aclError aclSetCompileopt(int opt, const char *value)
{
    (void)opt;
    return value ? ACL_SUCCESS : ACL_ERROR_INVALID_PARAM;
}

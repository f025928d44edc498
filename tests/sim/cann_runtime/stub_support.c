/* Linked into every simulated CANN library (hidden, one copy per library). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sim_stub.h"

static __thread char last_error[512];

void sim_set_error(const char *msg)
{
    snprintf(last_error, sizeof last_error, "%s", msg);
    if (getenv("NPU_SIM_TRACE"))
        fprintf(stderr, "[npu-sim] %s\n", msg);
}

const char *sim_recent_error(void)
{
    return last_error;
}

int sim_unsupported(const char *name, int code)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s: not supported by the simulated CANN runtime (error %d)", name, code);
    sim_set_error(msg);
    return code;
}

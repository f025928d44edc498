/* Shared by the generated stub sources and the hand-written runtime.
 * Deliberately includes no system header: the generated files declare
 * vendor names (e.g. snprintf_s) that must not meet a libc prototype. */
#ifndef NPU_SIM_STUB_H
#define NPU_SIM_STUB_H

#define SIM_HIDDEN __attribute__((visibility("hidden")))

/* Records "<name> is not supported" as the recent error (and prints it when
 * NPU_SIM_TRACE is set); returns code so a stub can `return sim_unsupported(...)`. */
SIM_HIDDEN int sim_unsupported(const char *name, int code);

/* The message of the last failed call in this thread ("" when none). */
SIM_HIDDEN const char *sim_recent_error(void);
SIM_HIDDEN void sim_set_error(const char *msg);

#endif

/* Mutation for the power-cut test's self-check only: turns the durability calls into no-ops.
 * Loaded with LD_PRELOAD inside the VM when scripts/powercut.sh runs with --mutate nosync. */
#include <stddef.h>
int fsync(int fd) { (void)fd; return 0; }
int fdatasync(int fd) { (void)fd; return 0; }
int msync(void *addr, size_t len, int flags) { (void)addr; (void)len; (void)flags; return 0; }
void sync(void) {}

#include "CLibcrypto.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

int sluice_crypto_load_from(const char *soname, struct sluice_crypto_functions *table, char *error, size_t capacity) {
    // RTLD_LOCAL: libcrypto's symbols stay out of the global namespace (BoringSSL's are prefixed anyway).
    void *library = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *why = dlerror();
        snprintf(error, capacity, "%s", why != NULL ? why : soname);
        return 0;
    }
    void *symbol;
#define SLUICE_CRYPTO_RESOLVE(name)                                                                           \
    dlerror();                                                                                                \
    symbol = dlsym(library, #name);                                                                           \
    if (symbol == NULL) {                                                                                     \
        const char *why = dlerror();                                                                          \
        snprintf(error, capacity, "%s", why != NULL ? why : "undefined symbol: " #name);                      \
        dlclose(library);                                                                                     \
        return 0;                                                                                             \
    }                                                                                                         \
    table->name = (__typeof__(name) *)symbol;
    SLUICE_CRYPTO_FUNCTIONS(SLUICE_CRYPTO_RESOLVE)
#undef SLUICE_CRYPTO_RESOLVE
    return 1;
}

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct sluice_crypto_functions loaded_table;
static int loaded;
static char load_error[512];

static void load_libcrypto(void) {
    loaded = sluice_crypto_load_from(SLUICE_CRYPTO_SONAME, &loaded_table, load_error, sizeof load_error);
}

const struct sluice_crypto_functions *sluice_crypto_load(void) {
    // pthread_once publishes `loaded`, the table and the error text to every caller that returns from it.
    pthread_once(&load_once, load_libcrypto);
    return loaded ? &loaded_table : NULL;
}

const char *sluice_crypto_load_error(void) {
    pthread_once(&load_once, load_libcrypto);
    return load_error;
}

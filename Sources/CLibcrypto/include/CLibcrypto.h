#ifndef SLUICE_CLIBCRYPTO_H
#define SLUICE_CLIBCRYPTO_H

// libcrypto (OpenSSL 3), loaded with dlopen the first time Sluice needs it (a crlfile, a password file):
// linked at start-up it cost 1.45 MB of idle RSS for the loader's relocations and its constructor, while
// Sluice calls nothing in it when idle. OpenSSL's headers are included for their types, constants and
// header inlines (ERR_GET_LIB, ERR_GET_REASON) only; every libcrypto function is called through the table
// below, and nothing links -lcrypto (a direct call fails to link).

#include <stddef.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// The libcrypto functions Sluice calls: RevocationList.swift (crlfile) and PasswordFile.swift.
#define SLUICE_CRYPTO_FUNCTIONS(F)                                                                            \
    F(ASN1_INTEGER_to_BN)                                                                                     \
    F(BIO_free)                                                                                               \
    F(BIO_new_file)                                                                                           \
    F(BN_bn2hex)                                                                                              \
    F(BN_free)                                                                                                \
    F(CRYPTO_free)                                                                                            \
    F(CRYPTO_memcmp)                                                                                          \
    F(d2i_X509)                                                                                               \
    F(ERR_clear_error)                                                                                        \
    F(ERR_error_string_n)                                                                                     \
    F(ERR_peek_last_error)                                                                                    \
    F(EVP_Digest)                                                                                             \
    F(EVP_sha512)                                                                                             \
    F(PEM_read_bio_X509)                                                                                      \
    F(PEM_read_bio_X509_CRL)                                                                                  \
    F(PKCS5_PBKDF2_HMAC)                                                                                      \
    F(RAND_bytes)                                                                                             \
    F(X509_CRL_free)                                                                                          \
    F(X509_CRL_get0_by_cert)                                                                                  \
    F(X509_CRL_get0_lastUpdate)                                                                               \
    F(X509_CRL_get0_nextUpdate)                                                                               \
    F(X509_CRL_get_issuer)                                                                                    \
    F(X509_CRL_verify)                                                                                        \
    F(X509_NAME_cmp)                                                                                          \
    F(X509_NAME_oneline)                                                                                      \
    F(X509_check_ca)                                                                                          \
    F(X509_cmp_current_time)                                                                                  \
    F(X509_free)                                                                                              \
    F(X509_get0_pubkey)                                                                                       \
    F(X509_get0_serialNumber)                                                                                 \
    F(X509_get_issuer_name)                                                                                   \
    F(X509_get_subject_name)

/// libcrypto's functions, each with the type OpenSSL's header declares; a field is named as its function.
struct sluice_crypto_functions {
#define SLUICE_CRYPTO_FIELD(name) __typeof__(name) *_Nonnull name;
    SLUICE_CRYPTO_FUNCTIONS(SLUICE_CRYPTO_FIELD)
#undef SLUICE_CRYPTO_FIELD
};

/// The soname loaded: the library of Debian's libssl3 package.
#define SLUICE_CRYPTO_SONAME "libcrypto.so.3"

/// Loads libcrypto.so.3 on the first call (once, thread-safe); the table, or NULL when the library or one
/// of its functions could not be found (then `sluice_crypto_load_error` says why). Never unloaded.
const struct sluice_crypto_functions *_Nullable sluice_crypto_load(void);

/// Why `sluice_crypto_load` fails (dlerror's text; loads first if no call did yet); empty when it succeeds.
const char *_Nonnull sluice_crypto_load_error(void);

/// Opens `soname` and fills `table` (tests point it at a missing or wrong library). 1 on success; 0 with
/// dlerror's text in `error` (of `capacity` bytes, NUL-terminated) otherwise, the library then closed.
int sluice_crypto_load_from(
    const char *_Nonnull soname, struct sluice_crypto_functions *_Nonnull table, char *_Nonnull error,
    size_t capacity);

#endif

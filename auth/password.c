/*
 * argon2id password hashes (libargon2), stored as PHC strings so that each
 * hash carries its own parameters and salt: a parameter change needs no
 * migration, old hashes keep verifying and are replaced at the next log-in.
 */
#include "auth-priv.h"

#include <argon2.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Base64 without padding, as argon2 encodes salt and hash. */
#define B64_LEN(n) (((n)*4 + 2) / 3)

int auth_password_hash(const struct auth_argon2_params *params, const char *password,
                       char **ret_encoded)
{
    size_t pwlen = password ? strlen(password) : 0;
    if (pwlen == 0 || pwlen > AUTH_PASSWORD_MAX)
        return -EINVAL;
    unsigned char salt[AUTH_ARGON2_SALT_LEN];
    int r = auth_random(salt, sizeof(salt));
    if (r < 0)
        return r;
    size_t len = argon2_encodedlen(params->t_cost, params->m_cost_kib, params->parallelism,
                                   sizeof(salt), AUTH_ARGON2_HASH_LEN, Argon2_id);
    char *enc = malloc(len);
    if (!enc)
        return -ENOMEM;
    int ar =
        argon2id_hash_encoded(params->t_cost, params->m_cost_kib, params->parallelism, password,
                              pwlen, salt, sizeof(salt), AUTH_ARGON2_HASH_LEN, enc, len);
    OPENSSL_cleanse(salt, sizeof(salt));
    if (ar != ARGON2_OK) {
        log_debug("argon2 hash failed", "error", argon2_error_message(ar));
        free(enc);
        return ar == ARGON2_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EINVAL;
    }
    *ret_encoded = enc;
    return 0;
}

/* Standard base64 without padding, the encoding of argon2's PHC strings. */
static void b64_nopad(const unsigned char *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = abc[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
}

int auth_password_decoy(const struct auth_argon2_params *params, char **ret_encoded)
{
    unsigned char bytes[AUTH_ARGON2_SALT_LEN + AUTH_ARGON2_HASH_LEN];
    char salt[B64_LEN(AUTH_ARGON2_SALT_LEN) + 1], digest[B64_LEN(AUTH_ARGON2_HASH_LEN) + 1];
    int r = auth_random(bytes, sizeof(bytes));
    if (r < 0)
        return r;
    b64_nopad(bytes, AUTH_ARGON2_SALT_LEN, salt);
    b64_nopad(bytes + AUTH_ARGON2_SALT_LEN, AUTH_ARGON2_HASH_LEN, digest);
    char *enc = NULL;
    if (asprintf(&enc, "$argon2id$v=%u$m=%u,t=%u,p=%u$%s$%s", (unsigned)ARGON2_VERSION_13,
                 (unsigned)params->m_cost_kib, (unsigned)params->t_cost,
                 (unsigned)params->parallelism, salt, digest) < 0)
        return -ENOMEM;
    *ret_encoded = enc;
    return 0;
}

int auth_password_verify(const char *encoded, const char *password)
{
    if (!encoded || !password || strncmp(encoded, "$argon2id$", 10) != 0)
        return -EINVAL;
    size_t pwlen = strlen(password);
    if (pwlen > AUTH_PASSWORD_MAX)
        return -EACCES;
    /* argon2id_verify recomputes the hash and compares in constant time. */
    int ar = argon2id_verify(encoded, password, pwlen);
    if (ar == ARGON2_OK)
        return 0;
    if (ar == ARGON2_VERIFY_MISMATCH)
        return -EACCES;
    log_debug("argon2 verify failed", "error", argon2_error_message(ar));
    return ar == ARGON2_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EINVAL;
}

bool auth_password_needs_rehash(const struct auth_argon2_params *params, const char *encoded)
{
    if (!encoded)
        return true;
    unsigned v, m, t, p;
    int salt_at = -1;
    if (sscanf(encoded, "$argon2id$v=%u$m=%u,t=%u,p=%u$%n", &v, &m, &t, &p, &salt_at) != 4 ||
        salt_at < 0)
        return true;
    const char *salt = encoded + salt_at;
    const char *dollar = strchr(salt, '$');
    if (!dollar)
        return true;
    size_t salt_len = (size_t)(dollar - salt);
    size_t hash_len = strlen(dollar + 1);
    return v != ARGON2_VERSION_13 || m != params->m_cost_kib || t != params->t_cost ||
           p != params->parallelism || salt_len != B64_LEN(AUTH_ARGON2_SALT_LEN) ||
           hash_len != B64_LEN(AUTH_ARGON2_HASH_LEN);
}

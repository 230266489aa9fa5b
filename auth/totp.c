/*
 * TOTP second factor (liboath) and its recovery codes.
 *
 * Enrolment has two steps so that a person whose app never received the
 * secret cannot lock themselves out: begin stores a pending secret, confirm
 * enables it only after a code from the app matched.
 *
 * Recovery codes are 80 random bits each and are stored as SHA-256 digests,
 * not argon2: a slow hash defends guessable passwords, and nobody guesses 80
 * random bits, while a log-in may have to check against all ten codes.  The
 * digest is looked up by equality in SQL, which leaks only timing of a
 * digest of an unguessable value.
 */
#include "auth-priv.h"

#include <ctype.h>
#include <errno.h>
#include <liboath/oath.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECOVERY_BYTES 10 /* 80 bits = 16 base32 characters */
#define RECOVERY_CHARS 16
#define RECOVERY_HASH_LEN 32

bool auth_totp_code_shape(const char *code)
{
    if (!code || strlen(code) != AUTH_TOTP_DIGITS)
        return false;
    for (const char *c = code; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    return true;
}

/* liboath's comparison hook: compare in constant time, 0 on a match. */
static int ct_compare(void *handle, const char *test_otp)
{
    const char *code = handle;
    if (strlen(test_otp) != AUTH_TOTP_DIGITS)
        return 1;
    return CRYPTO_memcmp(code, test_otp, AUTH_TOTP_DIGITS) == 0 ? 0 : 1;
}

int auth_totp_check(const unsigned char *secret, size_t len, const char *code, int64_t now_s,
                    int64_t *ret_step)
{
    if (!auth_totp_code_shape(code) || len == 0)
        return -EACCES;
    int pos = 0;
    uint64_t counter = 0;
    /* Window 1: the previous, current and next 30 s step, for clocks a
     * little off and codes typed at a step's end. */
    int r = oath_totp_validate3_callback(
        (const char *)secret, len, (time_t)now_s, AUTH_TOTP_PERIOD_S, OATH_TOTP_DEFAULT_START_TIME,
        AUTH_TOTP_DIGITS, 1, &pos, &counter, ct_compare, (void *)code);
    if (r < 0)
        return -EACCES;
    *ret_step = (int64_t)counter;
    return 0;
}

int auth_totp_enroll_begin(struct auth *a, int64_t user_id, char **ret_uri)
{
    unsigned char secret[AUTH_TOTP_SECRET_LEN];
    char *b32 = NULL;
    size_t b32len = 0;
    char *uri = NULL;
    struct db_user *u = NULL;
    int r = db_user_get(a->db, user_id, &u);
    if (r < 0)
        goto out;
    if (u->totp_enabled) {
        r = -EALREADY;
        goto out;
    }
    r = auth_random(secret, sizeof(secret));
    if (r < 0)
        goto out;
    if (oath_base32_encode((const char *)secret, sizeof(secret), &b32, &b32len) != OATH_OK) {
        r = -ENOMEM;
        goto out;
    }
    if (asprintf(&uri, "otpauth://totp/Atrium:%s?secret=%s&issuer=Atrium&digits=%d&period=%d",
                 u->username, b32, AUTH_TOTP_DIGITS, AUTH_TOTP_PERIOD_S) < 0) {
        uri = NULL;
        r = -ENOMEM;
        goto out;
    }
    r = db_user_totp_set_pending(a->db, user_id, secret, sizeof(secret));
    if (r < 0)
        goto out;
    *ret_uri = uri;
    uri = NULL;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    if (b32) {
        OPENSSL_cleanse(b32, b32len);
        free(b32);
    }
    if (uri) {
        OPENSSL_cleanse(uri, strlen(uri));
        free(uri);
    }
    db_user_free(u);
    return r;
}

/* Canonical form of a recovery code as typed: no dashes or spaces, upper case. */
static int recovery_normalize(const char *code, char out[static RECOVERY_CHARS + 1])
{
    size_t n = 0;
    for (const char *c = code; *c; c++) {
        if (*c == '-' || *c == ' ')
            continue;
        char u = (char)toupper((unsigned char)*c);
        if (!((u >= 'A' && u <= 'Z') || (u >= '2' && u <= '7')) || n == RECOVERY_CHARS)
            return -EINVAL;
        out[n++] = u;
    }
    out[n] = '\0';
    return n == RECOVERY_CHARS ? 0 : -EINVAL;
}

static int recovery_digest(const char *normalized, unsigned char out[static RECOVERY_HASH_LEN])
{
    unsigned int len = 0;
    if (EVP_Digest(normalized, strlen(normalized), out, &len, EVP_sha256(), NULL) != 1 ||
        len != RECOVERY_HASH_LEN)
        return -EIO;
    return 0;
}

/*
 * Make AUTH_RECOVERY_CODES new codes: the printable codes in *ret_codes and
 * their digests in @digests.
 */
static int recovery_generate(char ***ret_codes,
                             unsigned char digests[AUTH_RECOVERY_CODES][RECOVERY_HASH_LEN])
{
    int r = 0;
    char **codes = calloc(AUTH_RECOVERY_CODES + 1, sizeof(*codes));
    if (!codes)
        return -ENOMEM;
    for (size_t i = 0; i < AUTH_RECOVERY_CODES; i++) {
        unsigned char raw[RECOVERY_BYTES];
        char *b32 = NULL;
        size_t b32len = 0;
        r = auth_random(raw, sizeof(raw));
        if (r == 0 && oath_base32_encode((const char *)raw, sizeof(raw), &b32, &b32len) != OATH_OK)
            r = -ENOMEM;
        OPENSSL_cleanse(raw, sizeof(raw));
        if (r == 0 && b32len != RECOVERY_CHARS)
            r = -EIO;
        if (r == 0)
            r = recovery_digest(b32, digests[i]);
        if (r == 0 &&
            asprintf(&codes[i], "%.4s-%.4s-%.4s-%.4s", b32, b32 + 4, b32 + 8, b32 + 12) < 0) {
            codes[i] = NULL;
            r = -ENOMEM;
        }
        if (b32) {
            OPENSSL_cleanse(b32, b32len);
            free(b32);
        }
        if (r < 0)
            goto out;
    }
    *ret_codes = codes;
    codes = NULL;
out:
    auth_strv_free(codes);
    return r;
}

int auth_totp_enroll_confirm(struct auth *a, int64_t user_id, const char *code, char ***ret_codes)
{
    unsigned char digests[AUTH_RECOVERY_CODES][RECOVERY_HASH_LEN];
    const unsigned char *ptrs[AUTH_RECOVERY_CODES];
    char **codes = NULL;
    struct db_user *u = NULL;
    int64_t step = 0;
    int r = db_user_get(a->db, user_id, &u);
    if (r < 0)
        goto out;
    if (u->totp_enabled) {
        r = -EALREADY;
        goto out;
    }
    if (u->totp_secret_len == 0) {
        r = -ENOENT;
        goto out;
    }
    r = auth_totp_check(u->totp_secret, u->totp_secret_len, code, auth_now(a), &step);
    if (r < 0)
        goto out;
    r = recovery_generate(&codes, digests);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < AUTH_RECOVERY_CODES; i++)
        ptrs[i] = digests[i];
    r = db_user_totp_enable(a->db, user_id, u->totp_secret, u->totp_secret_len, step, ptrs,
                            AUTH_RECOVERY_CODES, RECOVERY_HASH_LEN);
    if (r == -ESTALE)
        r = -EALREADY; /* another enrolment finished or restarted meanwhile */
    if (r < 0)
        goto out;
    *ret_codes = codes;
    codes = NULL;
out:
    auth_strv_free(codes);
    db_user_free(u);
    return r;
}

int auth_totp_disable(struct auth *a, int64_t user_id)
{
    return db_user_totp_disable(a->db, user_id);
}

int auth_recovery_codes_regenerate(struct auth *a, int64_t user_id, char ***ret_codes)
{
    unsigned char digests[AUTH_RECOVERY_CODES][RECOVERY_HASH_LEN];
    const unsigned char *ptrs[AUTH_RECOVERY_CODES];
    char **codes = NULL;
    int r = recovery_generate(&codes, digests);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < AUTH_RECOVERY_CODES; i++)
        ptrs[i] = digests[i];
    r = db_user_recovery_replace(a->db, user_id, ptrs, AUTH_RECOVERY_CODES, RECOVERY_HASH_LEN);
    if (r < 0)
        goto out;
    *ret_codes = codes;
    codes = NULL;
out:
    auth_strv_free(codes);
    return r;
}

int auth_recovery_use(struct auth *a, int64_t user_id, const char *code, int *ret_left)
{
    char norm[RECOVERY_CHARS + 1];
    unsigned char digest[RECOVERY_HASH_LEN];
    int r = recovery_normalize(code, norm);
    if (r < 0) {
        r = -EACCES;
        goto out;
    }
    r = recovery_digest(norm, digest);
    if (r < 0)
        goto out;
    r = db_user_recovery_use(a->db, user_id, digest, sizeof(digest), ret_left);
    if (r == -ENOENT)
        r = -EACCES;
out:
    OPENSSL_cleanse(norm, sizeof(norm));
    return r;
}

/*
 * Opaque tokens: 32 random bytes from OpenSSL's CSPRNG, handed out as
 * unpadded base64url (safe in cookies and headers without quoting) and
 * stored only as their SHA-256.  A fast hash is right here: the token has
 * 256 bits of entropy, so there is nothing for a slow hash to protect.
 */
#include "broker-priv.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
        out[o++] = b64url[v >> 6 & 63];
        out[o++] = b64url[v & 63];
    }
    if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
        out[o++] = b64url[v >> 6 & 63];
    } else if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
    }
    out[o] = '\0';
}

int brk_token_hash(const char *text, unsigned char ret_hash[static DB_TOKEN_HASH_LEN])
{
    unsigned int len = 0;
    unsigned char h[EVP_MAX_MD_SIZE];
    if (EVP_Digest(text, strlen(text), h, &len, EVP_sha256(), NULL) != 1 ||
        len != DB_TOKEN_HASH_LEN)
        return -EIO;
    memcpy(ret_hash, h, DB_TOKEN_HASH_LEN);
    return 0;
}

int brk_token_new(char ret_text[static BRK_TOKEN_TEXT_LEN + 1],
                  unsigned char ret_hash[static DB_TOKEN_HASH_LEN])
{
    unsigned char raw[BRK_TOKEN_BYTES];
    char text[BRK_TOKEN_TEXT_LEN + 1];
    unsigned char h[DB_TOKEN_HASH_LEN];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    encode(raw, sizeof(raw), text);
    if (brk_token_hash(text, h) < 0)
        return -EIO;
    memcpy(ret_text, text, sizeof(text));
    memcpy(ret_hash, h, sizeof(h));
    return 0;
}

bool brk_token_well_formed(const char *text)
{
    return text && strlen(text) == BRK_TOKEN_TEXT_LEN && strspn(text, b64url) == BRK_TOKEN_TEXT_LEN;
}

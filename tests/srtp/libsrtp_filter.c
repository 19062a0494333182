/* An independent SRTP implementation for tests/srtp.rs: libsrtp2 as a packet filter.
 *
 *   libsrtp_filter MODE SUITE KEYHEX
 *
 * MODE: protect | unprotect | protect-rtcp | unprotect-rtcp. SUITE: 80 or 32
 * (AES_CM_128_HMAC_SHA1_80/_32; SRTCP always has the 80-bit tag). KEYHEX: the 30-byte master
 * key||salt in hex. Reads packets from stdin, each as a 2-byte big-endian length then the
 * bytes, and writes each result the same way; a packet libsrtp refuses is written as a record
 * of length 0 (its status on stderr), so the caller can tell which packet failed. */
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_exact(unsigned char *p, size_t n) { return fread(p, 1, n, stdin) == n; }

int main(int argc, char **argv) {
    if (argc != 4 || strlen(argv[3]) != 60) {
        fprintf(stderr, "usage: %s protect|unprotect|protect-rtcp|unprotect-rtcp 80|32 KEYHEX\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int protect = strncmp(mode, "protect", 7) == 0;
    int rtcp = strstr(mode, "rtcp") != NULL;
    unsigned char key[30];
    for (int i = 0; i < 30; i++) {
        unsigned v;
        if (sscanf(argv[3] + 2 * i, "%2x", &v) != 1) return 2;
        key[i] = (unsigned char)v;
    }
    if (srtp_init() != srtp_err_status_ok) return 1;
    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    if (strcmp(argv[2], "32") == 0)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp);
    else
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
    policy.ssrc.type = protect ? ssrc_any_outbound : ssrc_any_inbound;
    policy.key = key;
    policy.window_size = 128;
    srtp_t session;
    if (srtp_create(&session, &policy) != srtp_err_status_ok) return 1;
    unsigned char buf[4096];
    unsigned char hdr[2];
    while (read_exact(hdr, 2)) {
        int len = (hdr[0] << 8) | hdr[1];
        if (len > 2048 || !read_exact(buf, (size_t)len)) return 1;
        srtp_err_status_t st;
        if (protect)
            st = rtcp ? srtp_protect_rtcp(session, buf, &len) : srtp_protect(session, buf, &len);
        else
            st = rtcp ? srtp_unprotect_rtcp(session, buf, &len) : srtp_unprotect(session, buf, &len);
        if (st != srtp_err_status_ok) {
            fprintf(stderr, "%s: status %d\n", mode, (int)st);
            len = 0;
        }
        unsigned char out[2] = {(unsigned char)(len >> 8), (unsigned char)len};
        fwrite(out, 1, 2, stdout);
        fwrite(buf, 1, (size_t)len, stdout);
    }
    fflush(stdout);
    srtp_dealloc(session);
    srtp_shutdown();
    return 0;
}

// make-test-certs OUTDIR: write the test CA, server, client and broken certificates (PEM) into
// OUTDIR (created if missing). See fake_certs.cpp for the list; fake_make_test_certs() in
// fake_lmtp.h does the same in-process.
#include <cstdio>
#include <cstring>
#include <string>

#include "fake_server.hpp"

int main(int argc, char **argv) {
    if (argc != 2 || std::strcmp(argv[1], "--help") == 0 || argv[1][0] == '\0') {
        std::fprintf(argc == 2 && std::strcmp(argv[1], "--help") == 0 ? stdout : stderr,
                     "usage: make-test-certs OUTDIR\n"
                     "Writes (PEM, EC P-256, SHA-256): ca.pem ca.key, server.pem server.key (CN=localhost,\n"
                     "SAN DNS:localhost IP:127.0.0.1 IP:::1), wrong-name.pem/.key (SAN DNS:other.example),\n"
                     "expired.pem/.key, self-signed.pem/.key, other-ca.pem/.key, client.pem client.key\n"
                     "(CN=client.example). All but self-signed and other-ca are signed by ca.pem.\n");
        return argc == 2 && std::strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    std::string err;
    if (!fake::make_test_certs(argv[1], err)) {
        std::fprintf(stderr, "make-test-certs: %s\n", err.c_str());
        return 1;
    }
    return 0;
}

// Package labpki makes throw-away STIR/SHAKEN public key infrastructures for
// labs and tests: a self-signed root CA, an intermediate CA and a service
// provider (STI-SP) certificate shaped like ATIS-1000080 asks: ECDSA P-256,
// keyUsage digitalSignature only, not a CA, the TNAuthList extension
// (RFC 8226, SPC form by default), the SHAKEN certificate policy
// 2.16.840.1.114569.1.1.1, subject and authority key identifiers and, when
// asked, a CRL distribution point.
//
// Generate writes the files the appliance and its tests read:
//
//	DIR/root.pem          root CA certificate
//	DIR/intermediate.pem  intermediate CA certificate
//	DIR/sp.pem            SP certificate, then the intermediate
//	DIR/sp.key            SP private key, PKCS#8 PEM, mode 0600
//	DIR/<NAME>/...        the same set for each Options.Countries entry
//
// NewCA, (*CA).IssueSP and (*CA).CRL are the building blocks for tests that
// need several hierarchies, expired or revoked certificates. (*CA).IssueTLS
// issues the other kind of certificate the appliance uses, for SIP over TLS
// (server and client authentication, IP and DNS names), which is never the
// STI certificate.
//
// The keys are software keys written in the clear: this is lab material, never
// production trust. A CA is safe for concurrent use (issuing only reads it).
package labpki

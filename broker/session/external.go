package session

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// certUser names the user of a SASL EXTERNAL login from the verified client certificate, as
// RabbitMQ's rabbit_auth_mechanism_ssl: from "common_name" the subject's CN, otherwise (RabbitMQ's
// default "distinguished_name") the subject DN in RFC 4514 order, e.g. "CN=app,O=Example".
// reason is non-empty when no name can be taken; it is logged, not sent.
func certUser(st tls.ConnectionState, from string) (user, reason string) {
	if len(st.PeerCertificates) == 0 {
		return "", "no peer certificate"
	}
	if len(st.VerifiedChains) == 0 {
		// RabbitMQ refuses EXTERNAL unless the listener verifies peers ("TLS configuration is unsafe").
		return "", "TLS configuration is unsafe: the client certificate was not verified"
	}
	cert := st.PeerCertificates[0]
	if from == "common_name" {
		if cert.Subject.CommonName == "" {
			return "", "no name found"
		}
		return cert.Subject.CommonName, ""
	}
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(cert.RawSubject, &seq); err != nil || len(rest) > 0 {
		return "", "no name found"
	}
	name := seq.String()
	if name == "" {
		return "", "no name found"
	}
	return name, ""
}

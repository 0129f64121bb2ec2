package csi

import (
	"crypto/sha1" //nolint:gosec // OpenSSL's directory lookup names certificates by a SHA-1 of the subject; not a security use.
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/alauda/harbor-connector/policies"
)

// hashedCertFiles names each certificate of a PEM bundle as OpenSSL's CApath lookup expects,
// "<subject hash>.<n>" (what c_rehash / openssl rehash write), so OpenSSL-based clients (curl,
// Python, git) trust them through SSL_CERT_DIR. Go reads every file of the directory and needs
// no names; OpenSSL only opens the hashed name of the issuer it is looking for.
func hashedCertFiles(bundle []byte) (map[string][]byte, error) {
	certs, err := policies.PEMCertificates(bundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	out := map[string][]byte{}
	seen := map[uint32]int{}
	for _, cert := range certs {
		h, err := subjectHash(cert.RawSubject)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: certificate %q: %w", cert.Subject, err)
		}
		out[fmt.Sprintf("%08x.%d", h, seen[h])] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		seen[h]++
	}
	return out, nil
}

// subjectHash is OpenSSL's X509_NAME_hash: the first four bytes, little-endian, of the SHA-1 of
// the name's canonical encoding (x509_name_canon in crypto/x509/x_name.c).
func subjectHash(rawSubject []byte) (uint32, error) {
	canon, err := canonicalName(rawSubject)
	if err != nil {
		return 0, err
	}
	sum := sha1.Sum(canon) //nolint:gosec // see the import
	return binary.LittleEndian.Uint32(sum[:4]), nil
}

// canonicalName is the DER of each RDN SET, concatenated without the outer SEQUENCE, every
// string value re-encoded as a UTF8String that is lower-cased (ASCII), trimmed, and whose runs
// of white space are folded to one space. Non-string values are kept as they are.
func canonicalName(raw []byte) ([]byte, error) {
	in := cryptobyte.String(raw)
	var rdns cryptobyte.String
	if !in.ReadASN1(&rdns, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("malformed subject name")
	}
	var b cryptobyte.Builder
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) {
			return nil, fmt.Errorf("malformed relative distinguished name")
		}
		var err error
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for !set.Empty() {
				var atv, oid cryptobyte.String
				var value cryptobyte.String
				var tag cbasn1.Tag
				if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1Element(&oid, cbasn1.OBJECT_IDENTIFIER) ||
					!atv.ReadAnyASN1Element(&value, &tag) {
					err = fmt.Errorf("malformed attribute")
					return
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(oid)
					text, ok := stringValue(value, tag)
					if !ok {
						b.AddBytes(value)
						return
					}
					b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(canonicalText(text))) })
				})
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return b.Bytes()
}

// ASN.1 string types OpenSSL canonicalises (ASN1_MASK_CANON).
const (
	tagT61String       = cbasn1.Tag(20)
	tagUniversalString = cbasn1.Tag(28)
	tagBMPString       = cbasn1.Tag(30)
)

// stringValue decodes a DER string element to text; ok is false for types kept as they are.
func stringValue(element cryptobyte.String, tag cbasn1.Tag) (string, bool) {
	var body cryptobyte.String
	if !element.ReadASN1(&body, tag) {
		return "", false
	}
	switch tag {
	case cbasn1.UTF8String, cbasn1.PrintableString, cbasn1.IA5String, cbasn1.Tag(26): // 26: VisibleString
		return string(body), true
	case tagT61String: // OpenSSL treats it as Latin-1
		r := make([]rune, len(body))
		for i, c := range body {
			r[i] = rune(c)
		}
		return string(r), true
	case tagBMPString:
		if len(body)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(body)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(body[2*i:])
		}
		return string(utf16.Decode(u)), true
	case tagUniversalString:
		if len(body)%4 != 0 {
			return "", false
		}
		r := make([]rune, len(body)/4)
		for i := range r {
			r[i] = rune(binary.BigEndian.Uint32(body[4*i:]))
		}
		return string(r), true
	}
	return "", false
}

// canonicalText trims white space, folds inner runs of it to one space and lower-cases ASCII,
// as asn1_string_canon does (it leaves non-ASCII characters alone).
func canonicalText(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.TrimFunc(s, asciiSpace) {
		if asciiSpace(r) {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if r < 0x80 {
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func asciiSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r'
}

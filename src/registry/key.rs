//! The registry signing key: an EC P-256 key (PKCS#8 PEM, kept in the secrets backend) and
//! its self-signed certificate (PEM, a public file the registry reads as `rootcertbundle`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Why a registry key or certificate cannot be made or used. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The stored key is not a PKCS#8 PEM EC P-256 private key.
    #[error(
        "the registry signing key is not a PKCS#8 PEM EC P-256 private key (`BEGIN PRIVATE KEY`)"
    )]
    BadKey,
    /// Key or certificate generation failed.
    #[error("cannot generate the registry key or certificate: {0}")]
    Generate(String),
    /// The certificate file has no PEM certificate.
    #[error("the certificate bundle has no PEM certificate")]
    NoCertificate,
    /// No certificate in the bundle belongs to the signing key.
    #[error("no certificate in the bundle belongs to the signing key")]
    NoMatchingCertificate,
}

/// A P-256 SubjectPublicKeyInfo is 91 bytes and ends with the uncompressed point
/// `04 || X || Y`.
const P256_SPKI_LEN: usize = 91;

/// The first 27 bytes of every P-256 SubjectPublicKeyInfo (algorithm id-ecPublicKey with the
/// prime256v1 curve, then the BIT STRING holding an uncompressed point): how the key is found
/// inside a certificate.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

/// How registry tokens name their signing key in the JWS header (`[registry] header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenHeader {
    /// `x5c` (the certificate) and the libtrust `kid`: distribution 2.8, and 3.x with
    /// `rootcertbundle`. The default.
    #[default]
    X5c,
    /// No `x5c`; `kid` is the key's RFC 7638 thumbprint, as published in the JWKS: distribution
    /// 3.x configured with only a `jwks:` file (3.x checks an `x5c` chain first, and without
    /// `rootcertbundle` refuses every token that has one).
    Jwks,
}

impl TokenHeader {
    /// The setting's value: `x5c` or `jwks`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenHeader::X5c => "x5c",
            TokenHeader::Jwks => "jwks",
        }
    }
}

impl std::str::FromStr for TokenHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x5c" => Ok(TokenHeader::X5c),
            "jwks" => Ok(TokenHeader::Jwks),
            _ => Err(
                "must be \"x5c\" (distribution 2.8, and 3.x with rootcertbundle) or \"jwks\" \
                 (distribution 3.x with only a jwks file)"
                    .to_owned(),
            ),
        }
    }
}

/// The RFC 7638 thumbprint of a P-256 public key given by its JWK coordinates (base64url):
/// SHA-256 of `{"crv":"P-256","kty":"EC","x":X,"y":Y}` (the required members in lexical
/// order, no white space), base64url without padding.
pub fn jwk_thumbprint(x: &str, y: &str) -> String {
    // x and y are base64url: nothing in them needs escaping in JSON.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The public JWK (ES256) of a P-256 SubjectPublicKeyInfo, under `kid`.
fn jwk_of_spki(spki: &[u8], kid: &str) -> Option<serde_json::Value> {
    if spki.len() != P256_SPKI_LEN || !spki.starts_with(&P256_SPKI_PREFIX) {
        return None;
    }
    let point = &spki[P256_SPKI_LEN - 64..];
    Some(serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[..32]),
        "y": URL_SAFE_NO_PAD.encode(&point[32..]),
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
    }))
}

/// The RFC 7638 thumbprint of a P-256 SubjectPublicKeyInfo.
fn spki_thumbprint(spki: &[u8]) -> Option<String> {
    let jwk = jwk_of_spki(spki, "")?;
    Some(jwk_thumbprint(jwk["x"].as_str()?, jwk["y"].as_str()?))
}

/// The P-256 SubjectPublicKeyInfo inside a DER certificate, if it carries one.
pub fn certificate_p256_spki(cert_der: &[u8]) -> Option<&[u8]> {
    let at = cert_der
        .windows(P256_SPKI_PREFIX.len())
        .position(|w| w == P256_SPKI_PREFIX)?;
    cert_der.get(at..at + P256_SPKI_LEN)
}

/// The JWKS (`{"keys": [...]}`) of the P-256 keys of every certificate in a PEM bundle, each
/// with its RFC 7638 thumbprint as `kid`: the `jwks:` file of distribution 3.x, which then
/// trusts the same keys as `rootcertbundle` does (the new and the old key after a rotation).
pub fn bundle_jwks(bundle_pem: &[u8]) -> Result<serde_json::Value, KeyError> {
    let mut keys = Vec::new();
    for cert in bundle_certificates(bundle_pem)? {
        if let Some(spki) = certificate_p256_spki(&cert)
            && let Some(kid) = spki_thumbprint(spki)
            && let Some(jwk) = jwk_of_spki(spki, &kid)
            && !keys.contains(&jwk)
        {
            keys.push(jwk);
        }
    }
    Ok(serde_json::json!({ "keys": keys }))
}

/// The libtrust key id of a public key, which distribution 2.8 accepts in a token's `kid`:
/// SHA-256 of the DER SubjectPublicKeyInfo, the first 30 bytes, base32 (RFC 4648, upper
/// case, no padding: exactly 48 characters), in 12 groups of 4 joined by `:`.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = base32(&digest[..30]);
    let groups: Vec<&str> = (0..12).map(|i| &b32[i * 4..i * 4 + 4]).collect();
    groups.join(":")
}

/// RFC 4648 base32, upper case, without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// A new EC P-256 private key as PKCS#8 PEM (`BEGIN PRIVATE KEY`).
pub fn generate_key() -> Result<SecretString, KeyError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(SecretString::from(pair.serialize_pem()))
}

fn key_pair(key_pem: &SecretString) -> Result<rcgen::KeyPair, KeyError> {
    let pair = rcgen::KeyPair::from_pem(key_pem.expose_secret()).map_err(|_| KeyError::BadKey)?;
    if !pair.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
        return Err(KeyError::BadKey);
    }
    Ok(pair)
}

/// A self-signed certificate (PEM) of `key_pem`, with `common_name` as subject, valid from
/// yesterday for ten years.
pub fn self_signed_certificate(
    key_pem: &SecretString,
    common_name: &str,
) -> Result<String, KeyError> {
    let pair = key_pair(key_pem)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let day = |offset_days: i64, plus_years: i16| -> Result<_, KeyError> {
        let d = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let d = d
            .checked_add(jiff::Span::new().days(offset_days))
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let year = d.year() + plus_years;
        // 29 February + 10 years may not exist: use the 28th.
        let dom = d.day().min(28);
        let month = u8::try_from(d.month()).map_err(|e| KeyError::Generate(e.to_string()))?;
        let dom = u8::try_from(dom).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(rcgen::date_time_ymd(i32::from(year), month, dom))
    };
    params.not_before = day(-1, 0)?;
    params.not_after = day(0, 10)?;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params
        .self_signed(&pair)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(cert.pem())
}

/// The DER SubjectPublicKeyInfo of a PEM private key.
pub fn public_key_der(key_pem: &SecretString) -> Result<Vec<u8>, KeyError> {
    use rcgen::PublicKeyData;
    Ok(key_pair(key_pem)?.subject_public_key_info())
}

/// The DER certificates of a PEM bundle, in order.
pub fn bundle_certificates(bundle_pem: &[u8]) -> Result<Vec<Vec<u8>>, KeyError> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bundle_pem)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect();
    if certs.is_empty() {
        return Err(KeyError::NoCertificate);
    }
    Ok(certs)
}

/// Whether a DER certificate carries this DER SubjectPublicKeyInfo (it is embedded verbatim
/// in the TBSCertificate).
pub fn certificate_has_key(cert_der: &[u8], spki_der: &[u8]) -> bool {
    !spki_der.is_empty() && cert_der.windows(spki_der.len()).any(|w| w == spki_der)
}

/// The loaded signing key: what every registry token needs, computed once.
///
/// The P-256 key is parsed once here and signs with ring (constant-time, precomputed tables
/// for the base point). jsonwebtoken's `encode` with its RustCrypto backend parsed the PKCS#8
/// key again and derived its public key on every token, signed with a generic scalar
/// multiplication, searched for a recovery id it then dropped, and serialized and encoded the
/// ~700-byte header with the certificate each time.
pub struct RegistryKey {
    signing: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    x5c: String,
    /// The JWS header (`typ`, `alg` ES256, `kid`, `x5c`), JSON in base64url: the same for
    /// every token.
    header_b64: String,
    jwk: serde_json::Value,
    /// The DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
}

impl std::fmt::Debug for RegistryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RegistryKey {
    /// Loads a PKCS#8 PEM P-256 key and picks its certificate out of a PEM bundle.
    pub fn new(key_pem: &SecretString, bundle_pem: &[u8]) -> Result<RegistryKey, KeyError> {
        let spki = public_key_der(key_pem)?;
        if spki.len() != P256_SPKI_LEN || !spki.starts_with(&P256_SPKI_PREFIX) {
            return Err(KeyError::BadKey);
        }
        let cert = bundle_certificates(bundle_pem)?
            .into_iter()
            .find(|c| certificate_has_key(c, &spki))
            .ok_or(KeyError::NoMatchingCertificate)?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.expose_secret().as_bytes())
            .map_err(|_| KeyError::BadKey)?;
        let rng = SystemRandom::new();
        let signing = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|_| KeyError::BadKey)?;
        let x5c = STANDARD.encode(&cert);
        let mut key = RegistryKey {
            signing,
            rng,
            kid: String::new(),
            x5c,
            header_b64: String::new(),
            jwk: serde_json::Value::Null,
            spki,
        };
        key.set_header(TokenHeader::X5c)?;
        Ok(key)
    }

    /// This key with the header of `mode` (the default is [`TokenHeader::X5c`]).
    pub fn with_header(mut self, mode: TokenHeader) -> Result<RegistryKey, KeyError> {
        self.set_header(mode)?;
        Ok(self)
    }

    /// Prepares the header of every token and the JWK for `mode`: the header's `kid` is the
    /// JWK's `kid` in both modes.
    fn set_header(&mut self, mode: TokenHeader) -> Result<(), KeyError> {
        let mut header = Header::new(Algorithm::ES256);
        let kid = match mode {
            TokenHeader::X5c => {
                header.x5c = Some(vec![self.x5c.clone()]);
                libtrust_kid(&self.spki)
            }
            TokenHeader::Jwks => spki_thumbprint(&self.spki).ok_or(KeyError::BadKey)?,
        };
        header.kid = Some(kid.clone());
        let header_json = serde_json::to_vec(&header).map_err(|_| KeyError::BadKey)?;
        self.jwk = jwk_of_spki(&self.spki, &kid).ok_or(KeyError::BadKey)?;
        self.header_b64 = URL_SAFE_NO_PAD.encode(header_json);
        self.kid = kid;
        Ok(())
    }

    /// The key id in every token's header and in the JWK: the libtrust key id
    /// ([`TokenHeader::X5c`]) or the RFC 7638 thumbprint ([`TokenHeader::Jwks`]).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The certificate, base64 DER (the `x5c` header entry).
    pub fn x5c(&self) -> &str {
        &self.x5c
    }

    /// The public key as a JWK (with `kid`).
    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// The encoded JWS header of every token.
    pub(crate) fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// An ES256 JWS signature of `message`: `r || s`, 64 bytes.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<ring::signature::Signature, KeyError> {
        self.signing
            .sign(&self.rng, message)
            .map_err(|_| KeyError::Generate("ECDSA signing failed".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn kid_shape() {
        let kid = libtrust_kid(b"anything");
        assert_eq!(kid.len(), 48 + 11);
        assert_eq!(kid.split(':').count(), 12);
        assert!(kid.split(':').all(|g| {
            g.len() == 4
                && g.chars()
                    .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        }));
    }

    /// The kid of the fixture key, computed independently with openssl and coreutils:
    /// `openssl pkey -in registry-signing-key.pem -pubout -outform DER | sha256sum | cut -c1-60
    /// | xxd -r -p | base32 | tr -d = | sed 's/..../&:/g; s/:$//'`.
    #[test]
    fn kid_of_fixture_matches_openssl() {
        let pem = include_str!("../../fixtures/registry-signing-key.pem");
        let expected = include_str!("../../fixtures/registry-signing-key.kid").trim();
        let spki = public_key_der(&SecretString::from(pem)).unwrap_or_default();
        assert_eq!(libtrust_kid(&spki), expected);
    }

    /// The RFC 7638 thumbprint of the fixture key, computed independently with Python
    /// (`cryptography` for the point, `hashlib` over the canonical JSON
    /// `{"crv":"P-256","kty":"EC","x":"Kgln4iD5GEa0U_Ax5nbj7ETrrpqT_9i0VWnkAsBUFmc",
    /// "y":"sl8hUwLLUVn02XXe5ojB29zulAr4RDsjJUMAlMV-yDA"}`).
    const FIXTURE_THUMBPRINT: &str = "nDnSJF3oOHm_J2bm6EXVYtPskZFFmhAlWdIk5yK0dH0";

    fn fixture() -> (SecretString, String) {
        let pem = SecretString::from(include_str!("../../fixtures/registry-signing-key.pem"));
        let cert = self_signed_certificate(&pem, "fixture").unwrap();
        (pem, cert)
    }

    fn header_of(key: &RegistryKey) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(key.header_b64()).unwrap()).unwrap()
    }

    #[test]
    fn thumbprint_of_fixture_matches_python() {
        let (pem, cert) = fixture();
        let spki = public_key_der(&pem).unwrap();
        assert_eq!(spki_thumbprint(&spki).unwrap(), FIXTURE_THUMBPRINT);
        let der = bundle_certificates(cert.as_bytes()).unwrap().remove(0);
        assert_eq!(certificate_p256_spki(&der), Some(&spki[..]));
    }

    #[test]
    fn jwks_header_has_no_x5c_and_the_thumbprint_kid_of_the_jwks() {
        let (pem, cert) = fixture();
        let key = RegistryKey::new(&pem, cert.as_bytes())
            .unwrap()
            .with_header(TokenHeader::Jwks)
            .unwrap();
        let header = header_of(&key);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], FIXTURE_THUMBPRINT);
        assert!(header.get("x5c").is_none(), "{header}");
        // The server's JWKS and the jwks: file for the registry name the key the same way.
        assert_eq!(key.jwk()["kid"], FIXTURE_THUMBPRINT);
        let file = bundle_jwks(cert.as_bytes()).unwrap();
        assert_eq!(file["keys"].as_array().unwrap().len(), 1);
        assert_eq!(file["keys"][0], *key.jwk());

        // The default stays what distribution 2.8 needs: x5c and the libtrust kid.
        let key = RegistryKey::new(&pem, cert.as_bytes()).unwrap();
        let header = header_of(&key);
        let der = bundle_certificates(cert.as_bytes()).unwrap().remove(0);
        assert_eq!(header["x5c"][0], STANDARD.encode(der));
        let libtrust = include_str!("../../fixtures/registry-signing-key.kid").trim();
        assert_eq!(header["kid"], libtrust);
        assert_eq!(key.jwk()["kid"], libtrust);
    }

    #[test]
    fn a_rotated_bundle_gives_a_jwks_of_both_keys() {
        let (_, cert) = fixture();
        let other = self_signed_certificate(&generate_key().unwrap(), "new").unwrap();
        let jwks = bundle_jwks(format!("{other}{cert}").as_bytes()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1], FIXTURE_THUMBPRINT);
    }

    #[test]
    fn header_setting_parses() {
        assert_eq!("x5c".parse::<TokenHeader>(), Ok(TokenHeader::X5c));
        assert_eq!("jwks".parse::<TokenHeader>(), Ok(TokenHeader::Jwks));
        assert!("kid".parse::<TokenHeader>().unwrap_err().contains("x5c"));
    }

    #[test]
    fn certificate_matches_key_and_jwk_has_point() {
        let key = generate_key().unwrap();
        assert!(
            key.expose_secret()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        let cert = self_signed_certificate(&key, "tessera registry").unwrap();
        let other = self_signed_certificate(&generate_key().unwrap(), "x").unwrap();
        // The matching certificate is found even when it is not first in the bundle.
        let bundle = format!("{other}{cert}");
        let loaded = RegistryKey::new(&key, bundle.as_bytes()).unwrap();
        let der = bundle_certificates(cert.as_bytes()).unwrap().remove(0);
        assert_eq!(loaded.x5c(), STANDARD.encode(der));
        assert_eq!(loaded.jwk()["kid"], loaded.kid());
        assert_eq!(loaded.jwk()["crv"], "P-256");
        assert!(matches!(
            RegistryKey::new(&key, other.as_bytes()),
            Err(KeyError::NoMatchingCertificate)
        ));
        assert!(matches!(
            RegistryKey::new(&key, b"not a pem"),
            Err(KeyError::NoCertificate)
        ));
        assert!(matches!(
            RegistryKey::new(&SecretString::from("junk"), cert.as_bytes()),
            Err(KeyError::BadKey)
        ));
    }
}

//! The CMS `EnvelopedData` that AWS KMS returns as `CiphertextForRecipient` (RFC 5652 §6),
//! read from BER.
//!
//! KMS encodes it in BER with indefinite lengths (`30 80 … 00 00`) for the outer structures
//! and may split the encrypted content into several OCTET STRING chunks, so a DER parser
//! (the `cms` crate) refuses it. This reader accepts exactly the shape KMS documents and
//! AWS's own client (`aws-nitro-enclaves-sdk-c`, `source/cms.c`) expects, and nothing else:
//!
//! ```text
//! ContentInfo ::= SEQUENCE { id-envelopedData, [0] EXPLICIT EnvelopedData }
//! EnvelopedData ::= SEQUENCE {
//!   version 2, originatorInfo [0] OPTIONAL (skipped),
//!   recipientInfos SET { KeyTransRecipientInfo {
//!     version 2, rid [0] subjectKeyIdentifier,
//!     keyEncryptionAlgorithm id-RSAES-OAEP (SHA-256, MGF1 with SHA-256),
//!     encryptedKey OCTET STRING } },
//!   encryptedContentInfo SEQUENCE {
//!     id-data, aes256-CBC with a 16-byte IV,
//!     encryptedContent [0] IMPLICIT OCTET STRING (primitive, or constructed chunks) } }
//! ```
//!
//! Lengths are bounded by the input, nesting by [`MAX_DEPTH`]; every malformed input is a
//! [`CmsError`], never a panic.

/// How deep constructed elements may nest (KMS's answer nests 6 deep).
pub const MAX_DEPTH: usize = 12;

/// DER of the OID 1.2.840.113549.1.7.3 (id-envelopedData).
const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
/// DER of the OID 1.2.840.113549.1.7.1 (id-data).
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
/// DER of the OID 1.2.840.113549.1.1.7 (id-RSAES-OAEP, RFC 8017 appendix A.2.1).
const OID_RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
/// DER of the OID 2.16.840.1.101.3.4.1.42 (aes256-CBC, RFC 3565).
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
/// RSAES-OAEP-params for SHA-256 and MGF1-SHA-256 with the default (empty) label, DER:
/// `SEQUENCE { [0] sha256 NULL, [1] { mgf1 { sha256 NULL } } }`, as KMS sends it.
const OAEP_SHA256_PARAMS: &[u8] = &[
    0x30, 0x2f, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00,
];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const CONTEXT_0_CONSTRUCTED: u8 = 0xa0;
const CONTEXT_0_PRIMITIVE: u8 = 0x80;

/// Why a `CiphertextForRecipient` was refused. Code: `sealing.kms_bad_response`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CiphertextForRecipient: {0}")]
pub struct CmsError(pub &'static str);

/// The parts of KMS's `EnvelopedData` the recipient needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopedParts {
    /// The content-encryption key, RSA-OAEP-SHA-256 encrypted to the recipient (256 bytes
    /// for RSA-2048).
    pub encrypted_key: Vec<u8>,
    /// The AES-256-CBC IV, 16 bytes.
    pub iv: [u8; 16],
    /// The AES-256-CBC ciphertext (PKCS#7 padded), chunks joined.
    pub ciphertext: Vec<u8>,
}

/// One BER element: its identifier octet and its contents (without an end-of-contents).
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Reads consecutive BER elements from a slice.
struct Reader<'a> {
    buf: &'a [u8],
    depth: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], depth: usize) -> Self {
        Self { buf, depth }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// The next element. Indefinite lengths are allowed on constructed elements only, and
    /// end at the matching `00 00`.
    fn element(&mut self) -> Result<Element<'a>, CmsError> {
        let (&tag, rest) = self.buf.split_first().ok_or(CmsError("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(CmsError("high tag numbers are not used by KMS"));
        }
        if tag == 0 {
            return Err(CmsError("unexpected end-of-contents"));
        }
        let (&first, rest) = rest.split_first().ok_or(CmsError("truncated"))?;
        if first == 0x80 {
            if tag & 0x20 == 0 {
                return Err(CmsError("indefinite length on a primitive element"));
            }
            if self.depth >= MAX_DEPTH {
                return Err(CmsError("nested too deep"));
            }
            // Walk the children to find the end-of-contents that closes this element.
            let mut inner = Reader::new(rest, self.depth + 1);
            loop {
                if inner.buf.starts_with(&[0, 0]) {
                    let body_len = rest.len() - inner.buf.len();
                    self.buf = &inner.buf[2..];
                    return Ok(Element {
                        tag,
                        body: &rest[..body_len],
                    });
                }
                inner.element()?;
            }
        }
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(CmsError("bad length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(CmsError("truncated"));
        }
        let (body, after) = rest.split_at(len);
        self.buf = after;
        Ok(Element { tag, body })
    }

    /// The next element, which must have identifier `tag`.
    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], CmsError> {
        let e = self.element()?;
        if e.tag != tag {
            return Err(CmsError(what));
        }
        Ok(e.body)
    }

    /// A reader over the contents of the next element, which must be `tag` (constructed).
    fn enter(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>, CmsError> {
        let body = self.expect(tag, what)?;
        Ok(Reader::new(body, self.depth + 1))
    }

    fn finish(&self, what: &'static str) -> Result<(), CmsError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CmsError(what))
        }
    }
}

/// Parses KMS's `CiphertextForRecipient` (BER `ContentInfo`) into what the recipient needs.
///
/// # Errors
/// [`CmsError`] naming the first part that is not the shape above.
pub fn parse_enveloped(ber: &[u8]) -> Result<EnvelopedParts, CmsError> {
    let mut top = Reader::new(ber, 0);
    let mut content_info = top.enter(SEQUENCE, "not a ContentInfo SEQUENCE")?;
    top.finish("bytes after the ContentInfo")?;
    if content_info.expect(OID, "ContentInfo has no content type")? != OID_ENVELOPED_DATA {
        return Err(CmsError("content type is not id-envelopedData"));
    }
    let mut explicit = content_info.enter(CONTEXT_0_CONSTRUCTED, "no [0] content")?;
    content_info.finish("bytes after the ContentInfo content")?;
    let mut env = explicit.enter(SEQUENCE, "EnvelopedData is not a SEQUENCE")?;
    explicit.finish("bytes after the EnvelopedData")?;

    if env.expect(INTEGER, "EnvelopedData has no version")? != [2] {
        return Err(CmsError("EnvelopedData version is not 2"));
    }
    if env.peek_tag() == Some(CONTEXT_0_CONSTRUCTED) {
        env.element()?; // originatorInfo: nothing KMS puts there matters to us
    }

    // recipientInfos: exactly one KeyTransRecipientInfo.
    let mut infos = env.enter(SET, "no recipientInfos SET")?;
    let mut ktri = infos.enter(SEQUENCE, "recipient is not a KeyTransRecipientInfo")?;
    infos.finish("more than one recipient")?;
    if ktri.expect(INTEGER, "recipient has no version")? != [2] {
        return Err(CmsError(
            "recipient version is not 2 (subjectKeyIdentifier)",
        ));
    }
    ktri.expect(
        CONTEXT_0_PRIMITIVE,
        "recipient is not named by subjectKeyIdentifier",
    )?;
    let mut alg = ktri.enter(SEQUENCE, "no keyEncryptionAlgorithm")?;
    if alg.expect(OID, "keyEncryptionAlgorithm has no OID")? != OID_RSAES_OAEP {
        return Err(CmsError("key encryption is not RSAES-OAEP"));
    }
    if alg.buf != OAEP_SHA256_PARAMS {
        return Err(CmsError(
            "RSAES-OAEP parameters are not SHA-256 with MGF1-SHA-256",
        ));
    }
    let encrypted_key = ktri.expect(OCTET_STRING, "no encryptedKey")?.to_vec();
    ktri.finish("bytes after the encryptedKey")?;

    // encryptedContentInfo.
    let mut eci = env.enter(SEQUENCE, "no encryptedContentInfo")?;
    if eci.expect(OID, "encryptedContentInfo has no content type")? != OID_DATA {
        return Err(CmsError("encrypted content type is not id-data"));
    }
    let mut cea = eci.enter(SEQUENCE, "no contentEncryptionAlgorithm")?;
    if cea.expect(OID, "contentEncryptionAlgorithm has no OID")? != OID_AES256_CBC {
        return Err(CmsError("content encryption is not AES-256-CBC"));
    }
    let iv: [u8; 16] = cea
        .expect(OCTET_STRING, "AES-256-CBC has no IV")?
        .try_into()
        .map_err(|_| CmsError("the IV is not 16 bytes"))?;
    cea.finish("bytes after the IV")?;
    let content = eci.element()?;
    eci.finish("bytes after the encryptedContent")?;
    let ciphertext = match content.tag {
        CONTEXT_0_PRIMITIVE => content.body.to_vec(),
        CONTEXT_0_CONSTRUCTED => {
            let mut chunks = Reader::new(content.body, MAX_DEPTH);
            let mut out = Vec::with_capacity(content.body.len());
            while !chunks.is_empty() {
                out.extend_from_slice(
                    chunks.expect(OCTET_STRING, "a chunk is not an OCTET STRING")?,
                );
            }
            out
        }
        _ => return Err(CmsError("no encryptedContent")),
    };
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(CmsError("the encrypted content is not whole AES blocks"));
    }
    // unprotectedAttrs [1] may follow; KMS sends none and we need none.
    while !env.is_empty() {
        if env.element()?.tag != 0xa1 {
            return Err(CmsError("unexpected element after encryptedContentInfo"));
        }
    }
    Ok(EnvelopedParts {
        encrypted_key,
        iv,
        ciphertext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real KMS answer, with what AWS's own parser extracts from it: the test vector of
    /// aws-nitro-enclaves-sdk-c `tests/cms_test.c` (Apache-2.0), copied to
    /// `tests/fixtures/kms/` with its source.
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/kms/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        hex::decode(text.trim()).unwrap()
    }

    #[test]
    fn parses_real_kms_answer_like_aws_sdk() {
        let parts = parse_enveloped(&fixture("cms_test.ber.hex")).unwrap();
        assert_eq!(parts.encrypted_key, fixture("cms_test.encrypted_key.hex"));
        assert_eq!(parts.iv.to_vec(), fixture("cms_test.iv.hex"));
        assert_eq!(parts.ciphertext, fixture("cms_test.ciphertext.hex"));
        assert_eq!(parts.encrypted_key.len(), 256);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_or_a_different_parse() {
        let ber = fixture("cms_test.ber.hex");
        let good = parse_enveloped(&ber).unwrap();
        for cut in 0..ber.len() {
            assert!(
                parse_enveloped(&ber[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut extra = ber.clone();
        extra.push(0);
        assert!(parse_enveloped(&extra).is_err());
        // The subjectKeyIdentifier (32 bytes after `02 01 02 80 20`) is not used.
        let ski = ber
            .windows(5)
            .position(|w| w == [2, 1, 2, 0x80, 0x20])
            .unwrap()
            + 5;
        for i in (0..ber.len()).filter(|i| !(ski..ski + 32).contains(i)) {
            for bit in [0x01u8, 0x80] {
                let mut m = ber.clone();
                m[i] ^= bit;
                // Flipping a bit inside a key, IV or ciphertext changes that value; anywhere
                // else it must be refused. Never a panic, never the original parts.
                if let Ok(p) = parse_enveloped(&m) {
                    assert_ne!(p, good, "flip at {i} kept the parse");
                }
            }
        }
    }

    #[test]
    fn refuses_other_algorithms_and_deep_nesting() {
        let ber = fixture("cms_test.ber.hex");
        let find = |needle: &[u8]| ber.windows(needle.len()).position(|w| w == needle).unwrap();
        let mut sha384_oaep = ber.clone();
        let at = find(OAEP_SHA256_PARAMS) + 16; // the hash OID's last byte (…04 02 01)
        sha384_oaep[at] = 0x02; // SHA-384
        assert_eq!(
            parse_enveloped(&sha384_oaep),
            Err(CmsError(
                "RSAES-OAEP parameters are not SHA-256 with MGF1-SHA-256"
            ))
        );
        let mut aes128 = ber.clone();
        let at = find(OID_AES256_CBC) + OID_AES256_CBC.len() - 1;
        aes128[at] = 0x02; // aes128-CBC
        assert_eq!(
            parse_enveloped(&aes128),
            Err(CmsError("content encryption is not AES-256-CBC"))
        );
        let mut deep = vec![];
        for _ in 0..64 {
            deep.extend_from_slice(&[0x30, 0x80]);
        }
        for _ in 0..64 {
            deep.extend_from_slice(&[0, 0]);
        }
        assert_eq!(parse_enveloped(&deep), Err(CmsError("nested too deep")));
    }
}

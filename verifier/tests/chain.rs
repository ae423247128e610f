//! The attestation certificate chain check ([`verify_chain`], rustls-webpki plus the Nitro
//! KeyUsage profile) against chains made here with rcgen in the Nitro shape (P-384 keys,
//! ECDSA with SHA-384): a valid chain passes, and each way a chain can be wrong is refused.
//! The 21 real AWS documents are in `attestation_fixtures.rs`.

use leadgate_verifier::attestation::{verify_chain, AttestationError};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};

/// 2025-06-01T00:00:00Z, Unix ms: inside every certificate's validity below.
const NOW: u64 = 1_748_736_000_000;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn params(cn: &str, ca: IsCa, usages: &[KeyUsagePurpose]) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = ca;
    p.key_usages = usages.to_vec();
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2026, 1, 1);
    p
}

fn ca_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ]
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap()
}

fn root() -> Ca {
    let key = key();
    let cert = params(
        "root",
        IsCa::Ca(BasicConstraints::Unconstrained),
        &ca_usages(),
    )
    .self_signed(&key)
    .unwrap();
    Ca { cert, key }
}

fn issue(p: CertificateParams, by: &Ca) -> Ca {
    let key = key();
    let cert = p.signed_by(&key, &by.cert, &by.key).unwrap();
    Ca { cert, key }
}

fn intermediate(cn: &str, by: &Ca) -> Ca {
    issue(
        params(cn, IsCa::Ca(BasicConstraints::Unconstrained), &ca_usages()),
        by,
    )
}

fn leaf(by: &Ca) -> Ca {
    issue(
        params(
            "leaf",
            IsCa::ExplicitNoCa,
            &[KeyUsagePurpose::DigitalSignature],
        ),
        by,
    )
}

fn check(root: &Ca, intermediates: &[&Ca], leaf: &Ca, now: u64) -> Result<(), AttestationError> {
    let ders: Vec<&[u8]> = intermediates
        .iter()
        .map(|c| c.cert.der().as_ref())
        .collect();
    verify_chain(root.cert.der(), &ders, leaf.cert.der(), now)
}

fn refused_because(r: Result<(), AttestationError>, why: &str) {
    match r {
        Err(AttestationError::ChainInvalid(w)) => assert_eq!(w, why),
        other => panic!("expected ChainInvalid({why:?}), got {other:?}"),
    }
}

#[test]
fn a_nitro_shaped_chain_verifies() {
    let r = root();
    let a = intermediate("zonal", &r);
    let b = intermediate("instance", &a);
    let l = leaf(&b);
    check(&r, &[&a, &b], &l, NOW).unwrap();
    // Intermediates in any order: webpki builds the path.
    check(&r, &[&b, &a], &l, NOW).unwrap();
}

#[test]
fn a_leaf_that_signs_another_certificate() {
    let r = root();
    let a = intermediate("zonal", &r);
    let l = leaf(&a);
    let l2 = issue(
        params(
            "leaf2",
            IsCa::ExplicitNoCa,
            &[KeyUsagePurpose::DigitalSignature],
        ),
        &l,
    );
    refused_because(check(&r, &[&a, &l], &l2, NOW), "an issuer is not a CA");
}

#[test]
fn a_non_ca_intermediate() {
    let r = root();
    // No basicConstraints at all, and basicConstraints with cA false.
    for ca in [IsCa::NoCa, IsCa::ExplicitNoCa] {
        let a = issue(params("not-a-ca", ca, &ca_usages()), &r);
        let l = leaf(&a);
        refused_because(check(&r, &[&a], &l, NOW), "an issuer is not a CA");
    }
}

#[test]
fn a_path_length_violation() {
    let r = root();
    let a = issue(
        params(
            "zonal",
            IsCa::Ca(BasicConstraints::Constrained(0)),
            &ca_usages(),
        ),
        &r,
    );
    let b = intermediate("instance", &a);
    let l = leaf(&b);
    refused_because(
        check(&r, &[&a, &b], &l, NOW),
        "path length constraint violated",
    );
    // The same constraint with no CA below it is fine.
    let l = leaf(&a);
    check(&r, &[&a], &l, NOW).unwrap();
}

#[test]
fn an_unknown_critical_extension() {
    let r = root();
    let a = intermediate("zonal", &r);
    let mut p = params(
        "leaf",
        IsCa::ExplicitNoCa,
        &[KeyUsagePurpose::DigitalSignature],
    );
    // 1.3.6.1.4.1.55555.1 (a private arc), content: DER NULL.
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![5, 0]);
    ext.set_criticality(true);
    p.custom_extensions.push(ext);
    let l = issue(p.clone(), &a);
    refused_because(check(&r, &[&a], &l, NOW), "unknown critical extension");
    // Not critical: ignored, as RFC 5280 §4.2 allows.
    p.custom_extensions[0].set_criticality(false);
    let l = issue(p, &a);
    check(&r, &[&a], &l, NOW).unwrap();
}

#[test]
fn key_usage_must_allow_the_use() {
    let r = root();
    // A CA whose KeyUsage lacks keyCertSign.
    let a = issue(
        params(
            "zonal",
            IsCa::Ca(BasicConstraints::Unconstrained),
            &[KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign],
        ),
        &r,
    );
    let l = leaf(&a);
    refused_because(
        check(&r, &[&a], &l, NOW),
        "key usage does not allow the certificate's use",
    );
    // A leaf whose KeyUsage lacks digitalSignature (it signs the attestation document).
    let a = intermediate("zonal", &r);
    let l = issue(
        params(
            "leaf",
            IsCa::ExplicitNoCa,
            &[KeyUsagePurpose::KeyEncipherment],
        ),
        &a,
    );
    refused_because(
        check(&r, &[&a], &l, NOW),
        "key usage does not allow the certificate's use",
    );
}

#[test]
fn a_leaf_that_is_a_ca() {
    let r = root();
    let a = intermediate("zonal", &r);
    let l = intermediate("leaf", &a);
    refused_because(check(&r, &[&a], &l, NOW), "the leaf certificate is a CA");
}

#[test]
fn another_root_a_missing_link_and_a_bad_signature() {
    let r = root();
    let other = root();
    let a = intermediate("zonal", &r);
    let l = leaf(&a);
    // Another root with the same name: the path is there by names, the signature is not.
    refused_because(
        check(&other, &[&a], &l, NOW),
        "certificate signature does not verify",
    );
    // The intermediate left out: no issuer for the leaf.
    refused_because(
        check(&r, &[], &l, NOW),
        "no path from the certificate to the pinned root",
    );
    // An impostor intermediate with the real one's name, under another root.
    let impostor = intermediate("zonal", &other);
    let l2 = leaf(&impostor);
    refused_because(
        check(&r, &[&impostor], &l2, NOW),
        "certificate signature does not verify",
    );
}

#[test]
fn dates_are_checked_at_the_callers_time() {
    let r = root();
    let a = intermediate("zonal", &r);
    let l = leaf(&a);
    for now in [1_735_689_599_000, 1_767_225_601_000] {
        let err = check(&r, &[&a], &l, now).unwrap_err();
        assert_eq!(err.code(), "attestation.expired", "{now}");
    }
}

//! AWS MSK IAM tokens checked against an independent SigV4 implementation: MSK cannot be reached
//! from here, so the token tracewarden's signer makes with known credentials is verified by
//! botocore (AWS's Python SDK core, `tests/fixtures/verify_msk_iam_token.py`), which recomputes the
//! presigned request's signature. A token signed with other credentials must fail the same check.
//!
//! Needs python3 with botocore (scripts/test.sh installs it).

#![cfg(feature = "aws-msk-iam")]

use std::process::Command;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use tracewarden::kafka_client::oauth::msk_iam::Signer;
use tracewarden::kafka_client::oauth::TokenSource;

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn token(region: &str, secret: &str) -> String {
    let credentials = Credentials::new(ACCESS_KEY, secret, None, None, "test");
    let signer = Signer::with_credentials(region, SharedCredentialsProvider::new(credentials)).unwrap();
    signer.fetch(0).unwrap().value
}

/// What botocore says of `token`, checked with the example credentials.
fn verify(token: &str, region: &str) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/verify_msk_iam_token.py");
    let ran = Command::new("python3")
        .args([script, token, region, ACCESS_KEY, SECRET_KEY])
        .output()
        .expect("python3 (scripts/test.sh installs it with botocore)");
    let said = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(!said.contains("ModuleNotFoundError"), "botocore is missing: pip install botocore ({said})");
    (ran.status.success(), said)
}

#[test]
fn a_token_is_signed_as_aws_signs_it() {
    for region in ["eu-west-1", "us-east-1", "ap-southeast-2"] {
        let (verified, said) = verify(&token(region, SECRET_KEY), region);
        assert!(verified && said.contains("verified"), "{region}: {said}");
    }
}

#[test]
fn a_token_signed_with_other_credentials_or_for_another_region_fails_the_check() {
    let (verified, said) = verify(&token("eu-west-1", "not-the-secret"), "eu-west-1");
    assert!(!verified && said.contains("signature"), "{said}");
    let (verified, said) = verify(&token("eu-west-1", SECRET_KEY), "us-east-1");
    assert!(!verified, "{said}");
}

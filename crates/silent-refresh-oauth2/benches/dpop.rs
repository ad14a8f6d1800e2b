//! What a DPoP proof costs, against the raw ES256 signature it is built around.
//!
//! Issue 20's bound: a resource request's proof (with `ath` and a nonce) costs at most
//! 1.3× the raw ES256 signature of the crate that signs it, both measured in this one
//! run. The raw signatures of both candidate crates (aws-lc-rs and RustCrypto's `p256`)
//! are measured every run, over a message as long as a proof's signing input; the
//! proofs are signed by the backend the features chose:
//!
//! ```sh
//! cargo bench -p silent-refresh-oauth2 --features dpop --bench dpop              # aws-lc-rs
//! cargo bench -p silent-refresh-oauth2 --no-default-features \
//!     --features dpop-rustcrypto --bench dpop                                    # RustCrypto
//! ```
//!
//! After the measurements it prints a summary: the medians and the ratio.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;

#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, ProofInput};

/// The backend `DpopKey` signs with in this build.
const BACKEND: &str = if cfg!(feature = "dpop") {
    "aws-lc-rs"
} else {
    "RustCrypto p256"
};

#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
fn benches(c: &mut Criterion) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use p256::ecdsa::signature::Signer as _;

    let scalar = [7u8; 32];
    let key = DpopKey::from_random_bytes(DpopAlgorithm::Es256, &scalar).expect("a key");
    let token = silent_refresh::Secret::new(format!("at_{}", "x".repeat(40)));
    let url = "https://api.example.com/v1/orders/42?expand=items";
    let nonce = "eyJ7S_zG.eyJH0-Z.HX4w-7v";
    let proof = key
        .proof(
            &ProofInput::new("GET", url, 1_700_000_000, [1; 16])
                .nonce(Some(nonce))
                .access_token(&token),
        )
        .expect("a proof");
    // The raw signatures sign a message as long as that proof's signing input.
    let message = proof.rsplit_once('.').expect("a JWS").0.as_bytes().to_vec();

    let aws = {
        let pem = key.to_pkcs8_pem().expect("a PEM");
        let der = base64_body(pem.expose());
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).expect("aws-lc key")
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let p256_key = p256::ecdsa::SigningKey::from_slice(&scalar).expect("p256 key");

    let mut group = c.benchmark_group("dpop");
    group.bench_function("raw_es256_aws_lc_rs", |b| {
        b.iter(|| aws.sign(&rng, black_box(&message)).expect("signed"));
    });
    group.bench_function("raw_es256_p256", |b| {
        b.iter(|| {
            let signature: p256::ecdsa::Signature = p256_key.sign(black_box(&message));
            signature
        });
    });
    let mut jti = 0u128;
    group.bench_function("proof_resource_with_ath", |b| {
        b.iter(|| {
            jti += 1;
            key.proof(black_box(
                &ProofInput::new("GET", url, 1_700_000_000, jti.to_le_bytes())
                    .nonce(Some(nonce))
                    .access_token(&token),
            ))
            .expect("a proof")
        });
    });
    group.bench_function("proof_token_request", |b| {
        b.iter(|| {
            jti += 1;
            key.proof(black_box(&ProofInput::new(
                "POST",
                "https://as.example.com/oauth/token",
                1_700_000_000,
                jti.to_le_bytes(),
            )))
            .expect("a proof")
        });
    });
    group.finish();
}

#[cfg(not(any(feature = "dpop", feature = "dpop-rustcrypto")))]
fn benches(_: &mut Criterion) {
    eprintln!("no DPoP backend: run with --features dpop or --features dpop-rustcrypto");
}

/// The DER in a PEM.
#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
fn base64_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

/// The median criterion measured for `name` in this run, in nanoseconds.
fn median(dir: &std::path::Path, name: &str) -> Option<f64> {
    let path = dir.join(name).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    // Criterion writes under <target>/criterion; this binary is <target>/<profile>/deps/.
    let dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.ancestors().nth(3)?.join("criterion"))
        })
        .map(|dir| dir.join("dpop"));
    let Some(dir) = dir else { return };
    let raw = if cfg!(feature = "dpop") {
        "raw_es256_aws_lc_rs"
    } else {
        "raw_es256_p256"
    };
    let micros = |ns: Option<f64>| ns.map_or("-".to_owned(), |ns| format!("{:.1} µs", ns / 1e3));
    println!("\nDPoP proof cost (medians of this run; proofs signed by {BACKEND}):");
    for name in [
        "raw_es256_aws_lc_rs",
        "raw_es256_p256",
        "proof_resource_with_ath",
        "proof_token_request",
    ] {
        println!("  {name:<26} {}", micros(median(&dir, name)));
    }
    if let (Some(proof), Some(sign)) = (median(&dir, "proof_resource_with_ath"), median(&dir, raw))
    {
        let ratio = proof / sign;
        let verdict = if ratio <= 1.3 { "within" } else { "OVER" };
        println!("  resource proof / {raw}: {ratio:.3} ({verdict} the 1.3 bound)");
    }
}

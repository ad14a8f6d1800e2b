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
//! After the measurements it prints a summary: criterion's medians, and the ratio
//! measured once more with the two interleaved (a batch of raw signatures, then a batch
//! of proofs, many times over; the median batch of each), so that a machine whose load
//! changes during the run does not tilt the ratio.

#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
use std::hint::black_box;
use std::path::PathBuf;
#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
use std::time::Instant;

use criterion::Criterion;

#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, ProofInput};

/// The backend `DpopKey` signs with in this build.
const BACKEND: &str = if cfg!(feature = "dpop") {
    "aws-lc-rs"
} else {
    "RustCrypto p256"
};

/// The criterion name of the raw signature of that backend's crate.
const RAW: &str = if cfg!(feature = "dpop") {
    "raw_es256_aws_lc_rs"
} else {
    "raw_es256_p256"
};

/// What is measured: a key, the token, URL and nonce of a resource request, and the
/// raw signers of both crates over a message as long as its proof's signing input.
#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
struct Setup {
    key: DpopKey,
    token: silent_refresh::Secret,
    url: &'static str,
    nonce: &'static str,
    message: Vec<u8>,
    aws: aws_lc_rs::signature::EcdsaKeyPair,
    rng: aws_lc_rs::rand::SystemRandom,
    p256: p256::ecdsa::SigningKey,
}

#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
impl Setup {
    fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        use base64::Engine as _;

        let scalar = [7u8; 32];
        let key = DpopKey::from_random_bytes(DpopAlgorithm::Es256, &scalar).expect("a key");
        let mut setup = Self {
            aws: {
                let pem = key.to_pkcs8_pem().expect("a PEM");
                let body: String = pem
                    .expose()
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .expect("base64");
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .expect("aws-lc key")
            },
            key,
            token: silent_refresh::Secret::new(format!("at_{}", "x".repeat(40))),
            url: "https://api.example.com/v1/orders/42?expand=items",
            nonce: "eyJ7S_zG.eyJH0-Z.HX4w-7v",
            message: Vec::new(),
            rng: aws_lc_rs::rand::SystemRandom::new(),
            p256: p256::ecdsa::SigningKey::from_slice(&scalar).expect("p256 key"),
        };
        // The raw signatures sign a message as long as a proof's signing input.
        let proof = setup.resource_proof(0);
        setup.message = proof.rsplit_once('.').expect("a JWS").0.as_bytes().to_vec();
        setup
    }

    /// The raw ES256 signature of the crate `DpopKey` signs with in this build.
    fn raw_sign(&self) {
        if cfg!(feature = "dpop") {
            self.raw_aws();
        } else {
            self.raw_p256();
        }
    }

    fn raw_aws(&self) {
        black_box(
            self.aws
                .sign(&self.rng, black_box(&self.message))
                .expect("signed"),
        );
    }

    fn raw_p256(&self) {
        use p256::ecdsa::signature::Signer as _;
        let signature: p256::ecdsa::Signature = self.p256.sign(black_box(&self.message));
        black_box(signature);
    }

    /// A resource request's proof, `ath` and nonce included.
    fn resource_proof(&self, jti: u128) -> String {
        self.key
            .proof(black_box(
                &ProofInput::new("GET", self.url, 1_700_000_000, jti.to_le_bytes())
                    .nonce(Some(self.nonce))
                    .access_token(&self.token),
            ))
            .expect("a proof")
    }

    /// A token request's proof.
    fn token_proof(&self, jti: u128) -> String {
        self.key
            .proof(black_box(&ProofInput::new(
                "POST",
                "https://as.example.com/oauth/token",
                1_700_000_000,
                jti.to_le_bytes(),
            )))
            .expect("a proof")
    }
}

#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
fn benches(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("dpop");
    group.bench_function("raw_es256_aws_lc_rs", |b| b.iter(|| setup.raw_aws()));
    group.bench_function("raw_es256_p256", |b| b.iter(|| setup.raw_p256()));
    let mut jti = 0u128;
    group.bench_function("proof_resource_with_ath", |b| {
        b.iter(|| {
            jti += 1;
            setup.resource_proof(jti)
        });
    });
    group.bench_function("proof_token_request", |b| {
        b.iter(|| {
            jti += 1;
            setup.token_proof(jti)
        });
    });
    group.finish();
}

#[cfg(not(any(feature = "dpop", feature = "dpop-rustcrypto")))]
fn benches(_: &mut Criterion) {
    eprintln!("no DPoP backend: run with --features dpop or --features dpop-rustcrypto");
}

/// The raw signature and the resource proof measured interleaved: `rounds` times a
/// batch of raw signatures then a batch of proofs; the median batch of each, in
/// nanoseconds per operation.
#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
fn interleaved(rounds: usize) -> Option<(f64, f64)> {
    let setup = Setup::new();
    // About a millisecond a batch with either backend.
    let batch: u32 = if cfg!(feature = "dpop") { 40 } else { 4 };
    let (mut raw, mut proofs) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let per_op = |started: Instant| started.elapsed().as_secs_f64() * 1e9 / f64::from(batch);
    let mut jti = 0u128;
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..batch {
            setup.raw_sign();
        }
        raw.push(per_op(started));
        let started = Instant::now();
        for _ in 0..batch {
            jti += 1;
            black_box(setup.resource_proof(jti));
        }
        proofs.push(per_op(started));
    }
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times.get(times.len() / 2).copied()
    };
    Some((median(raw)?, median(proofs)?))
}

#[cfg(not(any(feature = "dpop", feature = "dpop-rustcrypto")))]
fn interleaved(_: usize) -> Option<(f64, f64)> {
    None
}

/// The median criterion measured for `name` in this run, in nanoseconds.
fn median(dir: &std::path::Path, name: &str) -> Option<f64> {
    let path = dir.join(name).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

/// Whether a ratio keeps to the bound.
fn verdict(ratio: f64) -> &'static str {
    if ratio <= 1.3 { "within" } else { "OVER" }
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
    let micros = |ns: Option<f64>| ns.map_or("-".to_owned(), |ns| format!("{:.1} µs", ns / 1e3));
    println!("\nDPoP proof cost (proofs signed by {BACKEND}):");
    if let Some(dir) = &dir {
        println!("  criterion medians:");
        for name in [
            "raw_es256_aws_lc_rs",
            "raw_es256_p256",
            "proof_resource_with_ath",
            "proof_token_request",
        ] {
            println!("    {name:<26} {}", micros(median(dir, name)));
        }
        let proof = median(dir, "proof_resource_with_ath");
        if let (Some(proof), Some(sign)) = (proof, median(dir, RAW)) {
            let ratio = proof / sign;
            println!(
                "    resource proof / {RAW}: {ratio:.3} ({} the 1.3 bound)",
                verdict(ratio)
            );
        }
    }
    if let Some((sign, proof)) = interleaved(2000) {
        let ratio = proof / sign;
        println!(
            "  interleaved, 2000 rounds: {RAW} {:.1} µs, resource proof {:.1} µs, \
             ratio {ratio:.3} ({} the 1.3 bound)",
            sign / 1e3,
            proof / 1e3,
            verdict(ratio)
        );
    }
}

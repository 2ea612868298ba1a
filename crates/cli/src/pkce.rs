//! `latchkey pkce`: a fresh verifier and its S256 challenge (the seed's step 2, RFC 7636 §4.1-4.2).

use latchkey_proto::CodeVerifier;

pub fn run() -> anyhow::Result<()> {
    let v = CodeVerifier::generate();
    println!("code_verifier: {}", v.expose_secret());
    println!("code_challenge: {}", v.challenge().as_str());
    println!("code_challenge_method: S256");
    Ok(())
}

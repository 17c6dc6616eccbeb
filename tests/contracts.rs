//! The Solidity side: the forge tests of `contracts/` (registry, verifier adapter, instance
//! decoding), run with the pinned forge and the project's solc resolution (`foundry.toml`).

mod common;

#[test]
fn forge_tests_of_the_contracts_pass() {
    let forge = zkinfer::evm::toolchain::resolve_forge().expect("forge is available");
    // Make sure the solc adapter's npm package is installed too.
    zkinfer::evm::toolchain::resolve_solc(None).expect("solc is available");
    let out = std::process::Command::new(forge)
        .args(["test", "--root", common::root().to_str().unwrap()])
        .current_dir(common::root())
        .output()
        .expect("forge runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "forge test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let passed = stdout.lines().filter(|l| l.starts_with("[PASS]")).count();
    assert!(passed >= 16, "expected the 16 forge tests to pass, saw {passed}:\n{stdout}");
    assert!(!stdout.contains("[FAIL"), "{stdout}");
}

//! `vsa demo` and `vsa embed` on the bundled model and sample photos.

use crate::support::vsa;

#[test]
fn demo_prints_sensible_classes_and_a_similarity_table() {
    let out = vsa(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("espresso"), "{stdout}");
    assert!(
        stdout.contains("Egyptian cat") || stdout.contains("tabby"),
        "{stdout}"
    );
    assert!(stdout.contains("cosine similarity"), "{stdout}");
}

#[test]
fn embed_reports_a_bad_file_clearly() {
    let dir = std::env::temp_dir().join(format!("vsa-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("not-an-image.jpg");
    std::fs::write(&bad, b"this is not a jpeg").unwrap();
    let out = vsa(&["embed", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not-an-image.jpg") && stderr.contains("not a supported image"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_runtime_library_names_the_setup_command() {
    let out = vsa(&["demo", "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/setup.sh"), "{stderr}");
}

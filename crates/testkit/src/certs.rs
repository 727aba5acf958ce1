//! Throwaway TLS certificates for 127.0.0.1, made with the `openssl` command in a test's
//! directory: P-256 keys, two days of validity.

use crate::clients::run_ok;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `openssl ARGS` in `dir`, which must succeed.
pub fn openssl(dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("openssl").current_dir(dir).args(args),
        Duration::from_secs(60),
    );
}

/// `openssl req` with a new P-256 key written to `key`: a self-signed certificate (`x509`)
/// or a signing request for `subject`, written to `out`, plus `extra` arguments.
fn new_key_request(dir: &Path, x509: bool, key: &str, out: &str, subject: &str, extra: &[&str]) {
    let mut args = vec!["req"];
    if x509 {
        args.extend(["-x509", "-days", "2"]);
    }
    args.extend([
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        out,
        "-subj",
        subject,
    ]);
    args.extend(extra);
    openssl(dir, &args);
}

/// `server.key` and a self-signed `server.crt` for 127.0.0.1 in `dir`.
pub fn self_signed(dir: &Path) {
    new_key_request(
        dir,
        true,
        "server.key",
        "server.crt",
        "/CN=127.0.0.1",
        &["-addext", "subjectAltName=IP:127.0.0.1"],
    );
}

/// A self-signed P-256 certificate for `subject` and its key, `<name>.crt` and
/// `<name>.key` in `dir` (a signer's certificate, such as a Notary delegation's).
pub fn signer(dir: &Path, name: &str, subject: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    new_key_request(dir, true, &key, &crt, subject, &[]);
}

/// A CA (`ca.key`, `ca.crt`) and `server.key` with `server.crt` for 127.0.0.1 and
/// localhost signed by it, in `dir`.
pub fn ca_and_server(dir: &Path) {
    new_key_request(dir, true, "ca.key", "ca.crt", "/CN=berth test CA", &[]);
    new_key_request(dir, false, "server.key", "server.csr", "/CN=127.0.0.1", &[]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

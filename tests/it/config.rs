//! `sluice serve` / `sluice config print` configuration through the built binary: file, SLUICE_*
//! environment and flags, and the one-line errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn sluice(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SLUICE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("\"{key}\"")))
        .unwrap_or_else(|| panic!("{key} not in\n{printed}"))
}

#[test]
fn config_print_shows_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        "\"num.partitions\" = 2\n\"log.retention.ms\" = 1000\n\"message.max.bytes\" = 4096\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = sluice(
        &[
            "config",
            "print",
            "--config",
            f,
            "--set",
            "log.retention.ms=3000",
            "--cores",
            "3",
        ],
        &[
            ("SLUICE_NUM_PARTITIONS", "5"),
            ("SLUICE_LOG_RETENTION_MS", "2000"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        line(&out, "num.partitions")
            .starts_with("\"num.partitions\" = 5  # environment variable SLUICE_NUM_PARTITIONS"),
        "{out}"
    );
    assert!(
        line(&out, "log.retention.ms").starts_with("\"log.retention.ms\" = 3000  # flag --set"),
        "{out}"
    );
    assert!(
        line(&out, "message.max.bytes").contains("= 4096  # config file"),
        "{out}"
    );
    assert!(line(&out, "cores").contains("= 3  # flag --cores"), "{out}");
    assert!(
        line(&out, "admin.listen").contains("\"127.0.0.1:9644\"  # default"),
        "{out}"
    );
    // What it prints is a config file that gives the same configuration.
    std::fs::write(&file, &out).unwrap();
    let (code, again, err) = sluice(&["config", "print", "--config", f], &[]);
    assert_eq!(code, 0, "{err}");
    let values = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with('"'))
            .map(|l| l.split("  #").next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&again), values(&out));
}

#[test]
fn bad_config_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("sluice.toml");
    let f = file.to_str().unwrap();
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "serve",
            "--data-dir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        sluice(&args, env)
    };
    // (flags, environment, config file content, expected in the error)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec!["--config", f],
            vec![],
            "\"num.partitions\" = 0\n",
            Some("`num.partitions`"),
        ),
        (
            vec!["--config", f],
            vec![],
            "\"no.such.thing\" = 1\n",
            Some("`no.such.thing`"),
        ),
        (
            vec!["--config", f],
            vec![],
            "\"auto.create.topics.enable\" = \"yes\"\n",
            Some("`auto.create.topics.enable`"),
        ),
        (
            vec!["--config", f],
            vec![],
            "num.partitions = = 1\n",
            Some("not valid TOML"),
        ),
        (
            vec![],
            vec![("SLUICE_LOG_RETENTION_MS", "forever")],
            "",
            Some("SLUICE_LOG_RETENTION_MS"),
        ),
        (
            vec![],
            vec![("SLUICE_NUM_PARTITONS", "3")],
            "",
            Some("`num.partitons`"),
        ),
        (
            vec!["--set", "listeners=SSL://127.0.0.1:9093"],
            vec![],
            "",
            Some("`listeners`"),
        ),
        (
            vec!["--log-format", "xml"],
            vec![],
            "",
            Some("`log.format`"),
        ),
        (
            vec!["--config", "/nonexistent/sluice.toml"],
            vec![],
            "",
            Some("cannot read config file /nonexistent/sluice.toml"),
        ),
    ];
    for (args, env, content, want) in cases {
        if !content.is_empty() {
            std::fs::write(&file, content).unwrap();
        }
        let (code, out, err) = serve(&args, &env);
        assert_ne!(code, 0, "{args:?} {env:?} {content}: {out}{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            !lines.is_empty() && lines[0].starts_with("error: "),
            "{err}"
        );
        if let Some(w) = want {
            assert!(lines[0].contains(w), "want {w} in: {err}");
        }
        assert!(
            err.lines().count() <= 8,
            "one clear error (TOML syntax errors quote the line), not a wall: {err}"
        );
        assert!(!data.exists(), "nothing started: {err}");
    }
}

/// `--log-format json`: every log line of a running broker is one JSON object; `--log-level`
/// filters.
#[test]
fn json_logs_from_a_running_broker() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--data-dir", dir.path().join("data").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--cores", "1", "--log-format", "json", "--log-level", "info"])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a broker that never logs "stopped" is killed after 30 s (the test then fails).
    let pid = child.id() as i32;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                if std::time::Instant::now() > until {
                    // SAFETY: our own child, not yet reaped (done is set only after wait()).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
        seen.push(line.clone());
        if v["fields"]["message"] == "sluice broker listening" {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        if v["fields"]["message"] == "sluice broker stopped" {
            break;
        }
    }
    let status = child.wait().unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    watchdog.join().unwrap();
    assert!(status.success(), "{status:?}: {seen:?}");
    assert!(seen.iter().any(|l| l.contains("sluice broker stopped")), "{seen:?}");
}

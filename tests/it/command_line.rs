//! The `eguichet` command as an operator types it: every command the README shows,
//! with the variables the README tells them to export, and from the wrong directory.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Variables a test must not inherit from the shell that runs it.
const INHERITED: [&str; 4] = [
    "EGUICHET_CONFIG",
    "EGUICHET_DATA_DIR",
    "EGUICHET_DATABASE__URL",
    "EGUICHET_KEYS__MASTER_KEY",
];

/// Runs `eguichet args…` in `cwd` with `env` set, feeding `stdin`.
fn eguichet_in(cwd: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eguichet"));
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in INHERITED {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The commands of the README's list and examples, with its example values; the
/// password is what `agent password` reads from standard input.
const README_COMMANDS: &[(&[&str], &str)] = &[
    (&["migrate"], ""),
    (
        &[
            "agent",
            "create",
            "--email",
            "agent@mairie.example",
            "--role",
            "agent",
        ],
        "",
    ),
    (
        &[
            "agent",
            "create",
            "--email",
            "dgs@mairie.example",
            "--role",
            "admin",
        ],
        "",
    ),
    (&["agent", "token", "--email", "agent@mairie.example"], ""),
    (
        &[
            "agent",
            "token",
            "--email",
            "agent@mairie.example",
            "--name",
            "compta",
            "--days",
            "30",
        ],
        "",
    ),
    (
        &[
            "agent",
            "token",
            "--email",
            "agent@mairie.example",
            "--list",
        ],
        "",
    ),
    (
        &[
            "agent",
            "token",
            "--email",
            "agent@mairie.example",
            "--revoke",
            "compta",
        ],
        "",
    ),
    (
        &["agent", "password", "--email", "dgs@mairie.example"],
        "une phrase de passe assez longue\n",
    ),
    (&["agent", "reset-2fa", "--email", "dgs@mairie.example"], ""),
    (
        &[
            "department",
            "create",
            "--slug",
            "etat-civil",
            "--name",
            "État civil",
        ],
        "",
    ),
    (&["dashboard", "refill"], ""),
    (&["keys", "rotate"], ""),
    (&["audit", "verify"], ""),
    (&["cleanup"], ""),
];

#[test]
fn every_readme_command_works_with_the_delivery_token_exported() {
    let portal = tempfile::tempdir().unwrap();
    let data_dir = portal.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    // As after `export EGUICHET_TOKEN=$(eguichet agent token …)` for a bulk delivery.
    let env = [
        ("EGUICHET_TOKEN", "egt_0123456789abcdef"),
        ("EGUICHET_SERVER", "https://guichet.example.org"),
    ];
    for (args, stdin) in README_COMMANDS {
        let output = eguichet_in(portal.path(), &env, args, stdin);
        assert!(
            output.status.success(),
            "eguichet {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // The anchors file: the configured one by default, or a copy named on the line.
    let missing = eguichet_in(portal.path(), &env, &["audit", "verify", "--anchors"], "");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("audit-anchors.log"));
    let copy = portal.path().join("anchors-copy.log");
    std::fs::write(
        &copy,
        format!("2026-12-05T18:00:00Z seq=999999 hash={}\n", "ab".repeat(32)),
    )
    .unwrap();
    let cut = eguichet_in(
        portal.path(),
        &env,
        &["audit", "verify", "--anchors", copy.to_str().unwrap()],
        "",
    );
    let stderr = String::from_utf8_lossy(&cut.stderr);
    assert!(!cut.status.success());
    assert!(stderr.contains("tail was cut"), "{stderr}");

    // The bulk client reads both variables; with no portal listening it fails on the
    // connection or the manifest, never on the configuration.
    let deliver = eguichet_in(
        portal.path(),
        &env,
        &["deliver", "--manifest", "envoi.csv", "--files", "./avis"],
        "",
    );
    let stderr = String::from_utf8_lossy(&deliver.stderr);
    assert!(!deliver.status.success());
    assert!(
        !stderr.contains("unknown field") && !stderr.contains("configuration"),
        "{stderr}"
    );
}

#[test]
fn the_readme_lists_no_command_this_test_does_not_run() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let tested: Vec<String> = README_COMMANDS
        .iter()
        .map(|(args, _)| {
            args.iter()
                .take_while(|arg| !arg.starts_with("--"))
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .chain(["serve".to_owned(), "deliver".to_owned()])
        .collect();
    for line in readme.lines() {
        let Some(rest) = line.strip_prefix("- `eguichet ") else {
            continue;
        };
        let quoted = rest.split('`').next().unwrap_or_default();
        let command: Vec<&str> = quoted
            .split_whitespace()
            .take_while(|word| !word.starts_with("--") && !word.starts_with('['))
            .collect();
        let command = command.join(" ");
        assert!(
            tested.contains(&command),
            "README command `eguichet {command}` is not run by the test"
        );
    }
}

#[test]
fn commands_run_from_another_directory_create_no_portal() {
    let elsewhere = tempfile::tempdir().unwrap();
    for (args, stdin) in README_COMMANDS {
        let output = eguichet_in(elsewhere.path(), &[], args, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "eguichet {}", args.join(" "));
        let looked_at = elsewhere.path().join("data");
        assert!(
            stderr.contains(&format!("data directory {}", looked_at.display()))
                || stderr.contains(&format!(
                    "data directory {}",
                    looked_at
                        .canonicalize()
                        .unwrap_or(looked_at.clone())
                        .display()
                )),
            "eguichet {}: {stderr}",
            args.join(" ")
        );
        assert!(stdout_is_empty(&output), "eguichet {}", args.join(" "));
        assert_eq!(
            std::fs::read_dir(elsewhere.path()).unwrap().count(),
            0,
            "eguichet {} created something",
            args.join(" ")
        );
    }

    // A data directory named explicitly but missing is refused the same way.
    let missing = elsewhere.path().join("portail");
    let output = eguichet_in(
        elsewhere.path(),
        &[("EGUICHET_DATA_DIR", missing.to_str().unwrap())],
        &["audit", "verify"],
        "",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(missing.to_str().unwrap()));
    assert!(!missing.exists());
}

fn stdout_is_empty(output: &Output) -> bool {
    output.stdout.is_empty()
}

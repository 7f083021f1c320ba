//! The deployment files: the Helm chart validated offline (`helm lint
//! --strict`, `helm template` with the default values and with every
//! feature on, the output checked against the Kubernetes schemas by
//! `deploy/helm/check.sh`), and the rendered manifests held to what the
//! `harrow` binary and the security rules expect.

mod common;

use std::path::Path;
use std::process::Command;

use common::HARROW;

/// Renders the chart through the check script; returns the default and the
/// all-features manifests.
fn rendered() -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(root.join("deploy/helm/check.sh"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "deploy/helm/check.sh failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
    (read("default.yaml"), read("all-features.yaml"))
}

/// The manifest documents of `kind` named `name`.
fn document<'a>(manifests: &'a str, kind: &str, name: &str) -> &'a str {
    manifests
        .split("\n---")
        .find(|doc| {
            doc.contains(&format!("\nkind: {kind}\n"))
                && doc.contains(&format!("\n  name: {name}\n"))
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in:\n{manifests}"))
}

/// The `HARROW_*` environment variables a subcommand reads, from its help.
fn env_of(subcommand: &str) -> Vec<String> {
    let help = Command::new(HARROW)
        .args([subcommand, "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    text.split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap().to_string())
        .collect()
}

/// The keys of a ConfigMap's data.
fn config_keys(config_map: &str) -> Vec<String> {
    let data = config_map.split("\ndata:\n").nth(1).unwrap();
    data.lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .map(|line| line.split(':').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_helm_chart_renders_valid_secure_manifests() {
    let (default, all) = rendered();
    for (values, manifests) in [("default", &default), ("all-features", &all)] {
        for component in ["coordinator", "worker"] {
            let name = format!("harrow-{component}");
            let deployment = document(manifests, "Deployment", &name);
            // Non-root, read-only, no privileges, native gRPC probes.
            for needle in [
                "runAsNonRoot: true",
                "readOnlyRootFilesystem: true",
                "allowPrivilegeEscalation: false",
                "automountServiceAccountToken: false",
                "readinessProbe:\n            grpc:",
                "livenessProbe:\n            grpc:",
                "app.kubernetes.io/component: ",
                "sizeLimit:",
            ] {
                assert!(
                    deployment.contains(needle),
                    "{values}: {name} lacks {needle:?}:\n{deployment}"
                );
            }
            // Every setting the chart passes is one the binary reads.
            let config = document(manifests, "ConfigMap", &name);
            let known = env_of(component);
            for key in config_keys(config) {
                if key.starts_with("HARROW_") && key != "HARROW_LOG" {
                    assert!(
                        known.contains(&key),
                        "{values}: {name} sets {key}, which `harrow {component}` does not read (it reads {known:?})"
                    );
                }
            }
        }
        // A worker gets its own token only: it cannot act as a client.
        let worker = document(manifests, "Deployment", "harrow-worker");
        assert!(!worker.contains("client-token"), "{values}: {worker}");
        assert!(worker.contains("fieldPath: status.podIP"), "{worker}");
        assert!(worker.contains("preStop:"), "{worker}");
        let coordinator = document(manifests, "Deployment", "harrow-coordinator");
        assert!(coordinator.contains("type: Recreate"), "{coordinator}");
        assert!(coordinator.contains("replicas: 1"), "{coordinator}");
    }

    // Default: tokens made by the chart, a worker disruption budget, and
    // the binary's own fault defaults (the chart repeats none of them).
    assert!(document(&default, "Secret", "harrow-auth").contains("client-token: "));
    let coordinator_config = document(&default, "ConfigMap", "harrow-coordinator");
    for unset in [
        "HARROW_MAX_ATTEMPTS",
        "HARROW_WORKER_TIMEOUT",
        "HARROW_HEARTBEAT",
    ] {
        assert!(!coordinator_config.contains(unset), "{coordinator_config}");
    }
    document(&default, "PodDisruptionBudget", "harrow-worker");
    assert!(!default.contains("HorizontalPodAutoscaler"));
    // The coordinator's state on a claim of the chart's, kept across pod
    // restarts, upgrades and uninstalls.
    assert!(coordinator_config.contains("HARROW_STATE_DIR: /var/lib/harrow/state"));
    let claim = document(
        &default,
        "PersistentVolumeClaim",
        "harrow-coordinator-state",
    );
    assert!(claim.contains("ReadWriteOnce"), "{claim}");
    assert!(claim.contains("helm.sh/resource-policy: keep"), "{claim}");
    let coordinator = document(&default, "Deployment", "harrow-coordinator");
    assert!(
        coordinator.contains("claimName: harrow-coordinator-state"),
        "{coordinator}"
    );

    // Every feature: TLS files, an existing token Secret, credentials from
    // secretKeyRef only, an autoscaler, both disruption budgets.
    assert!(
        !all.contains("kind: Secret\n"),
        "the chart must not make a Secret here"
    );
    let coordinator_config = document(&all, "ConfigMap", "harrow-coordinator");
    assert!(coordinator_config.contains("HARROW_MAX_ATTEMPTS: \"6\""));
    assert!(coordinator_config.contains("HARROW_WORKER_TIMEOUT: \"20s\""));
    assert!(!coordinator_config.contains("HARROW_STALL_TIMEOUT"));
    assert!(coordinator_config.contains("HARROW_RETAIN_JOBS: \"500\""));
    assert!(coordinator_config.contains("HARROW_RETAIN_FOR: \"72h\""));
    assert!(!all.contains("kind: PersistentVolumeClaim"));
    let coordinator = document(&all, "Deployment", "harrow-coordinator");
    assert!(
        coordinator.contains("claimName: harrow-coordinator-state-claim"),
        "{coordinator}"
    );
    let worker_config = document(&all, "ConfigMap", "harrow-worker");
    assert!(worker_config.contains("HARROW_COORDINATOR: \"https://harrow-coordinator:7070\""));
    assert!(worker_config.contains("HARROW_TLS_CA:"));
    assert!(!worker_config.contains("AWS_SECRET_ACCESS_KEY"));
    let worker = document(&all, "Deployment", "harrow-worker");
    assert!(
        worker.contains("secretKeyRef:\n                  name: s3-credentials"),
        "{worker}"
    );
    document(&all, "HorizontalPodAutoscaler", "harrow-worker");
    document(&all, "PodDisruptionBudget", "harrow-coordinator");
}

/// The image and the chart agree: the user the chart requires is the one
/// the image runs as, and the builder's Rust is the workspace's.
#[test]
fn the_dockerfile_matches_the_chart_and_the_workspace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    let values = std::fs::read_to_string(root.join("deploy/helm/harrow/values.yaml")).unwrap();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(dockerfile.contains("USER 65532:65532"), "{dockerfile}");
    assert!(values.contains("runAsUser: 65532"), "{values}");
    assert!(values.contains("runAsGroup: 65532"), "{values}");
    let rust = workspace
        .split("rust-version = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(
        dockerfile.contains(&format!("FROM rust:{rust}-")),
        "the builder image should be Rust {rust}:\n{dockerfile}"
    );
    assert!(dockerfile.contains("--bin harrow"), "{dockerfile}");
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/harrow\"]"));
}

"""yamllint on everything under deploy/ (manifests, kustomizations, adapter values, Prometheus files)."""

from __future__ import annotations

from deploy_tools import DEPLOY, ROOT, run, tool


def test_yamllint_strict_on_deploy() -> None:
    config = ROOT / ".yamllint.yaml"
    result = run([tool("yamllint"), "--strict", "--format", "parsable", "-c", str(config), str(DEPLOY)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_catches_a_broken_file(tmp_path) -> None:
    """Guard against a config that lints nothing: a duplicated key and bad indentation must fail."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Service\nkind: Deployment\nspec:\n   replicas: 1\n")
    result = run([tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(broken)])
    assert result.returncode != 0 and "duplication" in result.stdout, result.stdout

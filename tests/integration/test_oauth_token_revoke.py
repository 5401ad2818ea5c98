"""oauth_token_revoke and the two runbooks (playbooks/offboard_user.yml, playbooks/rotate_client_secret.yml)
through one real ansible-playbook run. What a revocation leaves, on every backend, is proven in-process
(tests/unit/test_cleanup_differential.py), and a real client sees it in test_live_clients.py."""

import stat

import pytest


@pytest.mark.one_backend
def test_revoke_then_the_runbooks(playbook):
    output = playbook.run("token_revoke.yml")
    secret_file = playbook.workdir / "rotated.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret_file.read_text().strip() not in output, "the generated secret was printed"
    for evidence in ("user: %s-offboard-tokens (pk " % playbook.prefix, "refresh tokens revoked: 6",
                     "access tokens deleted: 12", "grants deleted: 4", "rotated the secret of"):
        assert evidence in output, "the runbooks did not print %r" % evidence

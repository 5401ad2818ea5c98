"""oauth_token_cleanup through real ansible-playbook runs."""


def test_check_mode_then_cleanup_then_rerun(playbook):
    playbook.run("token_cleanup.yml")

"""oauth_application and oauth_application_info through real ansible-playbook runs."""


def test_lifecycle(playbook):
    playbook.run("lifecycle.yml")

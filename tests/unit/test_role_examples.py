"""Each role's `ansible-doc -t role` example is its README's playbook, verbatim.

The example lives in meta/argument_specs.yml, key `argument_specs.main.examples` (a string), which ansible-doc
prints under EXAMPLES and antsibull-docs renders as the role's example; the README's one ```yaml block is the
same playbook, so the doc tests that run README snippets run what ansible-doc shows.
"""

import re

import pytest
import yaml

from provisioning import REPO

pytestmark = pytest.mark.one_backend
ROLES = sorted(path.name for path in (REPO / "roles").iterdir() if (path / "meta" / "argument_specs.yml").exists())
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("role", ROLES)
def test_the_role_example_is_the_readme_playbook(role):
    blocks = YAML_BLOCK.findall((REPO / "roles" / role / "README.md").read_text())
    assert len(blocks) == 1, "roles/%s/README.md should have one ```yaml block, the role's example" % role
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    example = specs["argument_specs"]["main"].get("examples")
    assert example == blocks[0], ("roles/%s/meta/argument_specs.yml's examples should be roles/%s/README.md's "
                                  "playbook, verbatim" % (role, role))
    assert yaml.safe_load(example)[0]["roles"][0]["role"] == "oauthops.toolkit.%s" % role

# Sphinx settings for `make docs` (prodkit.cli.docs builds the site; this file is only read by it).
project = "prodkit"
extensions = ["myst_nb"]
nb_execution_mode = "off"            # the notebooks ran in `make test`; the site shows them as committed
myst_heading_anchors = 3             # `page.ipynb#compose` links to show_doc's `### compose`
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"                  # bundles its CSS/JS and fonts: the site loads nothing from the network
html_title = "prodkit"
html_static_path = []
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]

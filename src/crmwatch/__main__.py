from __future__ import annotations

from crmwatch.cli import main

main()

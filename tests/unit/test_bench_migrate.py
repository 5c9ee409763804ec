"""bench/migrate.py's reading of a client's share: exec to its first migration API call."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.migrate import first_migrate_call  # noqa: E402


def test_the_first_migration_api_call_is_found_after_the_other_calls(tmp_path: Path) -> None:
    log = tmp_path / "client.log"
    log.write_text(
        "2026-12-05 07:00:00.100+0000: 77: debug : virConnectOpenAuth:1277 : name=qemu:///system\n"
        "2026-12-05 07:00:00.120+0000: 77: debug : virDomainLookupByName:283 : name=g\n"
        "2026-12-05 07:00:00.135+0000: 77: info : virObjectNew:255 : OBJECT_NEW: obj=0x1\n"
        "2026-12-05 07:00:00.150+0000: 77: debug : virDomainMigrate3:9919 : dconn=0x2\n"
        "2026-12-05 07:00:00.900+0000: 77: debug : virDomainMigrateFinish3Params:1 : x\n")
    assert first_migrate_call(log) == 1796454000.15
    log.write_text("2026-12-05 07:00:00.100+0000: 77: debug : virConnectOpenAuth:1277 : n\n")
    assert first_migrate_call(log) is None
    assert first_migrate_call(tmp_path / "absent.log") is None

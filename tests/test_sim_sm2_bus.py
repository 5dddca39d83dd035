"""The demo's world under the 国密 profile, as far as the bus's own keys go: it makes an SM2 bus
key and an Ed25519 log key beside it, and the router, both witnesses and the procuratorate's
monitor run with them: the heads the monitor keeps were cosigned by both witnesses and carry
the bus's SM2 line, and it raised no alarm."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from bus.audit.checkpoint import verify_signed_checkpoint
from bus.audit.cosignature import verify_cosignature
from bus.audit.monitor import registry_sm2_keys
from bus.demo import run_days
from bus.settings import Settings
from bus.signing import SM2_SM3, Ed25519Signer, load_signer
from bus.sim import Fortnight, SteppedClock, running_world

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_a_world_made_under_the_sm2_profile_signs_its_log_with_both_keys(
    provisioned: Settings, tmp_path: Path
) -> None:
    bus_dir = tmp_path / "bus"
    settings = provisioned.model_copy(
        update={
            "bus_key_file": bus_dir / "casebus.key.pem",
            "checkpoint_interval_s": 1.0,
            "crypto_profile": "sm2",
        }
    )
    since = datetime.now(UTC)
    async with running_world(settings, key_dir=tmp_path / "k", clock=SteppedClock()) as world:
        bus = load_signer(bus_dir / "casebus.key.pem", agency_id="casebus")
        assert bus.algorithm == SM2_SM3
        log_file = world.settings.audit_log_key_file
        assert log_file == bus_dir / "casebus.log.key.pem"
        log_signer = load_signer(log_file, agency_id="casebus")
        assert isinstance(log_signer, Ed25519Signer)
        assert world.log_key == log_signer.private_key.public_key()

        sim = Fortnight(world, seed=19, days=2)
        flows = [sim.clue("ygh.regulator.planning", 0, signed=True, accept=True)]
        await run_days(sim, flows, console=Console(quiet=True), since=since)
        assert await registry_sm2_keys(world.pool) == (bus.public_key,)

        # The monitor keeps a head only once it verified it; wait until it kept one.
        kept = None
        for _ in range(600):
            kept = await world.pool.fetchrow(
                "SELECT tree_size, note FROM monitor_checkpoints ORDER BY tree_size DESC LIMIT 1"
            )
            if kept is not None or world.failed():
                break
            await asyncio.sleep(0.1)
        assert not world.failed(), world.failed()
        assert kept is not None, "the monitor kept no tree head"
        alarms = await world.pool.fetch("SELECT kind, detail FROM monitor_alarms")
        assert alarms == []
        note = kept["note"]
        cp = verify_signed_checkpoint(
            note, settings.audit_origin, world.log_key, sm2_keys=(bus.public_key,)
        )
        assert cp.size == kept["tree_size"]
        assert len(world.witnesses) == 2
        for witness in world.witnesses:
            assert verify_cosignature(note, witness.key).cosigner == witness.key.name

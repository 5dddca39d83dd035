"""``casebus demo``: the main job, a simulated fortnight through the whole bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import typer
import uvicorn
from rich.console import Console

from adapters._framework.auth import create_token
from bus.console import create_app
from bus.demo import run_demo
from bus.errors import CasebusError, ConfigError
from bus.logs import configure_logging
from bus.settings import REPO_ROOT, load_settings
from bus.signing import algorithm_of_profile
from bus.sim.world import World

app = typer.Typer(
    help="Run the demo: a simulated fortnight end to end.", invoke_without_command=True
)


@app.callback()
def demo(
    headless: bool = typer.Option(
        False, "--headless", help="Run to completion and exit (1 if an outcome is missing)."
    ),
    seed: int = typer.Option(2017, help="Seed of the simulated traffic."),
    days: int = typer.Option(14, help="Simulated days (at least 7)."),
    key_dir: Path = typer.Option(REPO_ROOT / ".casebus" / "keys", help="Where party keys live."),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="The local state folder (deploy/local's, beside the database the witnesses watch); "
        "the witnesses keep their SQLite stores under <state-dir>/witnesses. Default "
        "CASEBUS_STATE_DIR, else .casebus in the checkout.",
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Show every component's log lines."),
    console_port: int | None = typer.Option(
        None, "--console-port", help="The ops console's port (default CASEBUS_CONSOLE_PORT, 8088)."
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        help="The crypto profile of the keys the demo makes: ed25519, or sm2 (SM2 over SM3, "
        "GB/T 32918) for every agency, the SLA engine and the bus. Default "
        "CASEBUS_CRYPTO_PROFILE, else ed25519.",
    ),
) -> None:
    """Router, SLA engine, audit monitor, every adapter, the procuratorate's and the court's
    witnesses and fake departments in one process, driving a seeded fortnight of clues,
    opinions, penalty feedback, criminal transfers and a court application; then a summary.
    Without --headless the bus stays up until Ctrl-C."""
    settings = load_settings()
    if profile is not None:
        try:
            algorithm_of_profile(profile)
        except ConfigError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from e
        settings = settings.model_copy(update={"crypto_profile": profile})
    state_dir = settings.state_dir if state_dir is None else state_dir
    port = settings.console_port if console_port is None else console_port
    if not verbose:
        configure_logging(log_format="console", level="error")
        # aiokafka logs through the standard library: new topics' leader elections and the
        # like are not the reader's business during a demo.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console()

    async def stay_up(world: World) -> None:
        app = create_app(settings, pool=world.pool, clock=world.clock)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        # The console shows every agency's cases only to the procuratorate's token.
        token = await create_token(world.pool, "ygh.procuratorate", label="demo console")
        console.print(
            f"ops console: http://127.0.0.1:{port}/ — sign in with any user name and "
            f"the procuratorate's token {token} as the password; the bus keeps running; "
            "press Ctrl-C to stop everything",
            markup=False,
        )
        with contextlib.suppress(asyncio.CancelledError):
            await server.serve()  # returns on Ctrl-C (uvicorn handles SIGINT)

    try:
        summary = asyncio.run(
            run_demo(
                settings,
                key_dir=key_dir,
                state_dir=state_dir / "witnesses",
                seed=seed,
                days=days,
                console=console,
                then=None if headless else stay_up,
            )
        )
    except KeyboardInterrupt:
        console.print("stopped")
        return
    except (CasebusError, ValueError) as e:
        console.print(f"demo failed: {e}", markup=False)
        raise typer.Exit(1) from e
    if summary.missing:
        raise typer.Exit(1)
    console.print("demo finished: every flow ran, the log verified, the planted case was found")

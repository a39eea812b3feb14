"""``gridserver tiles build``: pre-build the basemap into a single PMTiles file under ``tiles/``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="底图瓦片 pre-built basemap tiles (PMTiles)", no_args_is_help=True)
console = Console()


@app.command("build")
def build(
    out: Path = typer.Option(None, "--out", help="archive file (default tiles/basemap.pmtiles, or $GRIDSERVER_TILES_DIR)"),
    minzoom: int = typer.Option(10, min=0, max=18, help="lowest zoom"),
    maxzoom: int = typer.Option(16, min=0, max=18, help="highest zoom"),
    layers: str = typer.Option(",".join(("landuse", "roads", "districts", "streets", "communities", "grids")),
                               help="public layers to include, comma-separated"),
):
    """Render roads, green areas and admin areas of the whole city once into one PMTiles archive,
    served at /tiles/basemap/{z}/{x}/{y}.mvt and /tiles/basemap.pmtiles (live layers stay dynamic)."""
    from rich.progress import Progress

    from gridserver.db.engine import pool
    from gridserver.errors import GridserverError
    from gridserver.maps.basemap_archive import archive_path, build_archive

    if minzoom > maxzoom:
        console.print(f"[red]--minzoom {minzoom} is above --maxzoom {maxzoom}[/red]")
        raise typer.Exit(2)
    names = [n.strip() for n in layers.split(",") if n.strip()]
    target = out or archive_path()
    try:
        with pool().connection() as conn, Progress(console=console, transient=True) as progress:
            task = progress.add_task("渲染瓦片 rendering tiles", total=None)
            report = build_archive(conn, target, minzoom, maxzoom, names,
                                   progress=lambda done, total: progress.update(task, completed=done, total=total))
    except (GridserverError, ValueError) as exc:
        console.print(f"[red]{getattr(exc, 'detail', exc)}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{report.path}: {report.tiles:,} tiles ({report.empty:,} empty skipped), "
                  f"{report.bytes / 1e6:.1f} MB, z{report.minzoom}–{report.maxzoom}, layers {', '.join(report.layers)}")

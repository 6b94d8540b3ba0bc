"""``roadvision imagery index DIR --out FILE``: a footprint catalogue of a folder of GeoTIFFs
(``roadvision.geo.catalogue``); ``imagery find CATALOGUE --bbox ...``: what covers an area."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Imagery catalogues: index a folder of GeoTIFFs, find what covers an "
                  "area.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add the ``imagery`` group to the root app (called by ``roadvision.cli``)."""
    root.add_typer(app, name="imagery")


@app.command("index")
def index(folder: Path = typer.Argument(..., help="folder of GeoTIFF / COG orthophotos"),
          out: Path = typer.Option(..., "--out", help="catalogue JSON file to write"),
          overwrite: bool = typer.Option(False, "--overwrite",
                                         help="replace a file that is not a catalogue")) -> None:
    """Index the footprints (WGS84), dates and GSDs of every GeoTIFF under FOLDER."""
    from roadvision.errors import UserError
    from roadvision.geo.catalogue import index_folder, read_catalogue, write_catalogue

    if out.exists() and not overwrite:
        try:
            read_catalogue(out)  # an earlier catalogue is replaced; anything else is not
        except UserError:
            raise UserError(f"--out {out}: exists and is not an imagery catalogue; pass "
                            "--overwrite to replace it") from None
    doc = index_folder(folder)
    write_catalogue(out, doc)
    typer.echo(f"{len(doc['features'])} rasters indexed, {len(doc['skipped'])} skipped -> {out}")
    for s in doc["skipped"]:
        typer.echo(f"  skipped {s['href']}: {s['reason']}")


@app.command("find")
def find(catalogue: Path = typer.Argument(..., help="catalogue JSON (imagery index)"),
         bbox: str = typer.Option(..., "--bbox", help="min_lon,min_lat,max_lon,max_lat")) -> None:
    """The indexed rasters that cover a WGS84 area, finest GSD first."""
    from roadvision.geo.catalogue import find_imagery, read_catalogue
    from roadvision.geo.crs import parse_bbox

    hits = find_imagery(read_catalogue(catalogue), parse_bbox(bbox))
    if not hits:
        typer.echo("no imagery covers this area")
        raise typer.Exit(1)
    for f in hits:
        p = f["properties"]
        typer.echo(f"{f['id']}  {p['href']}  {p['gsd_m']} m/px  {p['datetime'] or '-'}")


@app.command("synth")
def synth(out: Path = typer.Argument(..., help="folder to write the tiles into"),
          n: int = typer.Option(4, "--n", help="number of tiles"),
          size: int = typer.Option(512, help="tile side in pixels"),
          gsd: float = typer.Option(0.1, help="metres per pixel"),
          city: str | None = typer.Option(None, help="one city for every tile (default: drawn)"),
          seed: int = typer.Option(0, help="random seed"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace what OUT holds"),
          ) -> None:
    """Synthetic georeferenced tiles (GeoTIFF in the city's UTM zone) + ground-truth vectors."""
    from roadvision.data.synth.geotiff import write_tiles
    from roadvision.errors import UserError

    if not 16 <= size <= 4096:
        raise UserError(f"--size {size}: 16 .. 4096 pixels")
    tiles = write_tiles(out, n, seed, (size, size), gsd, city, overwrite=overwrite)
    typer.echo(f"{len(tiles)} GeoTIFF tiles ({size} px, {gsd} m/px) with .truth.gpkg "
               f"ground truth -> {out} (synthetic)")

"""``roadvision imagery index DIR --out FILE``: a footprint catalogue of a folder (or ``s3://``
prefix) of GeoTIFFs (``roadvision.geo.catalogue``); ``imagery find CATALOGUE --bbox ...``: what
covers an area; ``imagery providers [--providers FILE]``: the imagery provider chain
(``roadvision.geo.providers``) in order."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Imagery catalogues: index a folder of GeoTIFFs, find what covers an "
                  "area, show the provider chain.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add the ``imagery`` group to the root app (called by ``roadvision.cli``)."""
    root.add_typer(app, name="imagery")


@app.command("index")
def index(folder: str = typer.Argument(..., help="folder or s3://bucket/prefix of GeoTIFF / "
                                     "COG orthophotos"),
          out: Path = typer.Option(..., "--out", help="catalogue JSON file to write"),
          endpoint_url: str | None = typer.Option(
              None, "--endpoint-url", help="S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)"),
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
    doc = index_folder(folder, endpoint_url=endpoint_url)
    write_catalogue(out, doc)
    typer.echo(f"{len(doc['features'])} rasters indexed, {len(doc['skipped'])} skipped -> {out}")
    for s in doc["skipped"]:
        typer.echo(f"  skipped {s['href']}: {s['reason']}")


@app.command("find")
def find(catalogue: str = typer.Argument(..., help="catalogue JSON (imagery index): a file "
                                        "or s3://bucket/key"),
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


@app.command("providers")
def providers(
    config: Path | None = typer.Option(None, "--providers",
                                       help="provider config, YAML or JSON (default: "
                                       "$ROADVISION_IMAGERY_PROVIDERS; none: no providers)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """The imagery provider chain in the order it is tried: local catalogues, then tiles."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from roadvision.geo.providers import ENV_VAR, ImageryChain

    rows = ImageryChain.from_config(config).describe()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo(f"no imagery providers configured (pass --providers FILE or set {ENV_VAR})")
        return
    table = Table()
    for column in ("#", "name", "kind", "coverage", "zoom / GSD", "date", "enabled", "key from",
                   "circuit", "attribution"):
        table.add_column(column, overflow="fold")
    for i, r in enumerate(rows, start=1):
        table.add_row(str(i), escape(r["name"]), r["kind"], escape(r["coverage"]), r["zoom"],
                      escape(r.get("date") or "-"), "yes" if r["enabled"] else "no",
                      escape(r["key"]), escape(r.get("circuit") or "-"),
                      escape(r["attribution"] or "-"))
    Console().print(table)

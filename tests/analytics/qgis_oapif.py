"""Run by Debian's python3 (PyQGIS is built for it, not for the project's venv): QGIS's own OAPIF provider
reads one collection of an OGC API – Features server, as an analyst's QGIS would. Prints one JSON object.

usage: python3 qgis_oapif.py BASE_URL COLLECTION [PAGE_SIZE] [WEST SOUTH EAST NORTH]
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsFeatureRequest, QgsRectangle, QgsVectorLayer  # noqa: E402


def main(argv):
    url, name = argv[1], argv[2]
    page = argv[3] if len(argv) > 3 else "0"
    app = QgsApplication([], False)
    app.initQgis()
    uri = f"url='{url}' typename='{name}'" + (f" pageSize='{page}'" if page != "0" else "")
    layer = QgsVectorLayer(uri, name, "OAPIF")
    out = {"valid": layer.isValid(), "error": None if layer.isValid() else "invalid layer"}
    if layer.isValid():
        out["crs"] = layer.crs().authid()
        out["fields"] = {f.name(): f.typeName() for f in layer.fields()}
        out["geometry_type"] = layer.geometryType()
        feats = list(layer.getFeatures())
        out["count"] = len(feats)
        out["codes"] = [f["code"] for f in feats] if "code" in out["fields"] else []
        out["valid_geometries"] = sum(1 for f in feats if f.hasGeometry() and f.geometry().isGeosValid())
        ext = layer.extent()
        out["extent"] = [ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()]
        if len(argv) > 7:
            rect = QgsRectangle(*map(float, argv[4:8]))
            box = layer.getFeatures(QgsFeatureRequest().setFilterRect(rect))
            out["in_box"] = [f["code"] for f in box]
    print(json.dumps(out, ensure_ascii=False), flush=True)
    os._exit(0)  # QGIS 3.22 can crash in exitQgis() while providers wind down; the answer is out already


if __name__ == "__main__":
    main(sys.argv)

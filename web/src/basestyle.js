// The basemap drawn from our own data (green areas, water, roads by class) under the admin layers,
// in a light (/map, /m/) or dark (/screen) theme. No external tiles, sprites or glyphs.
import { FONT } from './common.js';

export const THEMES = {
  light: {
    background: '#f4f2ec', green: '#cfe5c0', water: '#a9cbe8',
    road: { motorway: '#f3b562', trunk: '#f6c77d', primary: '#fbe09a', secondary: '#ffffff', tertiary: '#ffffff',
      residential: '#ffffff', service: '#ffffff', path: '#d8d2c4' },
    casing: '#c9c1b0', roadText: '#6b6253', building: '#e0d8cc', buildingLine: '#c6bba9',
  },
  dark: {
    background: '#0b1a2b', green: '#10352b', water: '#123f66',
    road: { motorway: '#8aa0bb', trunk: '#7d93ae', primary: '#6f849e', secondary: '#5c708a', tertiary: '#4d6079',
      residential: '#3d4f66', service: '#33445a', path: '#2b3a4e' },
    casing: '#0b1a2b', roadText: '#7f93ad', building: '#1b2c40', buildingLine: '#2a3f57',
  },
};

const ROAD_WIDTH = {
  motorway: [10, 1.2, 16, 9], trunk: [10, 1.1, 16, 8], primary: [10, 1, 16, 7], secondary: [11, 0.7, 16, 5.5],
  tertiary: [12, 0.6, 16, 4.5], residential: [13, 0.5, 16, 3], service: [14, 0.4, 16, 2], path: [15, 0.4, 17, 1.5],
};

function width([z0, w0, z1, w1]) {
  return ['interpolate', ['exponential', 1.6], ['zoom'], z0, w0, z1, w1];
}

/** Sources and layers of the basemap for the layers of /tiles/layers.json that exist. */
export function basemapLayers(doc, theme = 'light') {
  const t = THEMES[theme];
  const sources = {};
  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': t.background } }];
  const present = new Set(doc.layers.map((l) => l.id));
  for (const l of doc.layers) {
    if (!['roads', 'landuse', 'buildings'].includes(l.id)) continue;
    sources[l.id] = { type: 'vector', tiles: l.tiles, minzoom: l.minzoom, maxzoom: l.maxzoom };
  }
  if (present.has('landuse')) {
    layers.push({ id: 'landuse-green', type: 'fill', source: 'landuse', 'source-layer': 'landuse',
      filter: ['==', ['get', 'kind'], 'green'], paint: { 'fill-color': t.green, 'fill-opacity': 0.9 } });
    layers.push({ id: 'landuse-water', type: 'fill', source: 'landuse', 'source-layer': 'landuse',
      filter: ['==', ['get', 'kind'], 'water'], paint: { 'fill-color': t.water } });
  }
  if (present.has('buildings')) {
    layers.push({ id: 'buildings-fill', type: 'fill', source: 'buildings', 'source-layer': 'buildings', minzoom: 15,
      paint: { 'fill-color': t.building, 'fill-outline-color': t.buildingLine } });
  }
  if (present.has('roads')) {
    const order = ['path', 'service', 'residential', 'tertiary', 'secondary', 'primary', 'trunk', 'motorway'];
    if (theme === 'light') {
      for (const c of order) {
        if (c === 'path') continue;
        const w = ROAD_WIDTH[c];
        layers.push({ id: `roads-casing-${c}`, type: 'line', source: 'roads', 'source-layer': 'roads',
          filter: ['==', ['get', 'class'], c], layout: { 'line-cap': 'round', 'line-join': 'round' },
          paint: { 'line-color': t.casing, 'line-width': width([w[0], w[1] + 1, w[2], w[3] + 2]) } });
      }
    }
    for (const c of order) {
      const paint = { 'line-color': t.road[c], 'line-width': width(ROAD_WIDTH[c]) };
      if (c === 'path') paint['line-dasharray'] = [2, 1];
      layers.push({ id: `roads-${c}`, type: 'line', source: 'roads', 'source-layer': 'roads',
        filter: ['==', ['get', 'class'], c], layout: { 'line-cap': 'round', 'line-join': 'round' }, paint });
    }
    layers.push({ id: 'roads-label', type: 'symbol', source: 'roads', 'source-layer': 'roads', minzoom: 14,
      filter: ['all', ['has', 'name'], ['!=', ['get', 'class'], 'path']],
      layout: { 'symbol-placement': 'line', 'text-field': ['get', 'name'], 'text-font': FONT, 'text-size': 12,
        'text-max-angle': 30, 'symbol-spacing': 300 },
      paint: { 'text-color': t.roadText, 'text-halo-color': t.background, 'text-halo-width': 1.5 } });
  }
  return { sources, layers };
}

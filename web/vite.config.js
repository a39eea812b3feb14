// Builds the /map page bundle into gridserver/maps/static/dist with stable file names
// (map.js, map.css, the MapLibre worker) and copies Leaflet for the offline folium export.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, '../gridserver/maps/static/dist');

function copyLeaflet() {
  return {
    name: 'copy-leaflet',
    closeBundle() {
      const target = resolve(outDir, 'vendor/leaflet');
      mkdirSync(target, { recursive: true });
      for (const f of ['leaflet.js', 'leaflet.css']) {
        copyFileSync(resolve(here, 'node_modules/leaflet/dist', f), resolve(target, f));
      }
    },
  };
}

export default defineConfig({
  base: '/static/map/dist/',
  publicDir: false,
  plugins: [copyLeaflet()],
  build: {
    outDir,
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
    assetsInlineLimit: 0,
    rollupOptions: {
      input: resolve(here, 'src/map.js'),
      output: {
        entryFileNames: 'map.js',
        chunkFileNames: '[name].js',
        assetFileNames: '[name][extname]',
      },
    },
  },
});

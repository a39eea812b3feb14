// Builds the map pages into gridserver/maps/static/dist with stable file names: /map (map.js,
// map.css), the command-center wall /screen (screen.js, screen.css), the grid-worker app /m/
// (mobile.js, mobile.css) and its service worker (sw.js); shared code (MapLibre) goes to shared
// chunks. Leaflet is copied for the offline folium export.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, '../gridserver/maps/static/dist');

const ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 96 96"><rect width="96" height="96" rx="18" fill="#1f3b57"/>
<path d="M20 24h56v48H20z" fill="none" stroke="#ffd166" stroke-width="5"/><path d="M48 24v48M20 48h56" stroke="#ffd166" stroke-width="3"/>
<circle cx="62" cy="36" r="7" fill="#e53935"/></svg>`;

function copyAssets() {
  return {
    name: 'copy-assets',
    closeBundle() {
      const target = resolve(outDir, 'vendor/leaflet');
      mkdirSync(target, { recursive: true });
      for (const f of ['leaflet.js', 'leaflet.css']) {
        copyFileSync(resolve(here, 'node_modules/leaflet/dist', f), resolve(target, f));
      }
      writeFileSync(resolve(outDir, 'icon.svg'), ICON);
    },
  };
}

export default defineConfig({
  base: '/static/map/dist/',
  publicDir: false,
  plugins: [copyAssets()],
  build: {
    outDir,
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
    assetsInlineLimit: 0,
    rollupOptions: {
      input: {
        map: resolve(here, 'src/map.js'),
        screen: resolve(here, 'src/screen.js'),
        mobile: resolve(here, 'src/mobile.js'),
        sw: resolve(here, 'src/sw.js'),
      },
      output: {
        entryFileNames: '[name].js',
        chunkFileNames: '[name].js',
        assetFileNames: '[name][extname]',
        // MapLibre (and its CSS) in one shared chunk with a stable name: vendor.js / vendor.css
        manualChunks: (id) => (id.includes('node_modules/maplibre-gl') ? 'vendor' : undefined),
      },
    },
  },
});

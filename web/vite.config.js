// Builds the map pages into gridserver/maps/static/dist with stable file names: /map (map.js,
// map.css), the command-center wall /screen (screen.js, screen.css), the grid-worker app /m/
// (mobile.js, mobile.css) and its service worker (sw.js); shared code (MapLibre) goes to shared
// chunks. Leaflet is copied for the offline folium export.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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

// The package (name/version) of a module inside node_modules, or null for our own sources.
function packageDir(id) {
  const m = id.replace(/\\/g, '/').match(/^(.*\/node_modules\/(?:@[^/]+\/)?[^/]+)\//);
  return m ? m[1] : null;
}

// THIRD-PARTY-LICENSES.txt beside the bundle: the name, version, licence and licence text of every
// npm package whose code went into it (read off the module graph), plus Leaflet (copied as is). BSD/ISC/MIT
// ask that the notice travel with the built files; minification drops the comments that carried it.
function thirdPartyLicenses() {
  const dirs = new Set([resolve(here, 'node_modules/leaflet')]);
  return {
    name: 'third-party-licenses',
    generateBundle() {
      for (const id of this.getModuleIds()) {
        const dir = packageDir(id);
        if (dir) dirs.add(dir);
      }
    },
    closeBundle() {
      const parts = [...dirs].map((dir) => {
        const pkg = JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8'));
        const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
        const text = file ? readFileSync(resolve(dir, file), 'utf8').replace(/\r\n?/g, '\n').trim() : `(no licence file; package.json says ${pkg.license})`;
        return { name: pkg.name, head: `${pkg.name} ${pkg.version} — ${pkg.license}`, text };
      }).sort((a, b) => a.name.localeCompare(b.name));
      const out = ['Third-party software in these files (gridserver front-end bundle)', '',
        ...parts.map((p) => `${'='.repeat(72)}\n${p.head}\n${'='.repeat(72)}\n${p.text}\n`)];
      writeFileSync(resolve(outDir, 'THIRD-PARTY-LICENSES.txt'), out.join('\n'));
    },
  };
}

// The files the phone app's page loads (mobile.js, the chunks it imports, their CSS), written into sw.js
// in place of __MOBILE_BUNDLE__: its offline shell follows however the pages' shared code is chunked.
function mobileShell() {
  return {
    name: 'mobile-shell',
    generateBundle(_options, bundle) {
      const chunks = Object.values(bundle).filter((c) => c.type === 'chunk');
      const byName = new Map(chunks.map((c) => [c.fileName, c]));
      const files = new Set();
      const visit = (c) => {
        if (!c || files.has(c.fileName)) return;
        files.add(c.fileName);
        for (const css of c.viteMetadata?.importedCss || []) files.add(css);
        c.imports.forEach((f) => visit(byName.get(f)));
      };
      visit(chunks.find((c) => c.isEntry && c.name === 'mobile'));
      const sw = chunks.find((c) => c.isEntry && c.name === 'sw');
      if (!files.size || !sw || !sw.code.includes('__MOBILE_BUNDLE__')) this.error('mobile shell: mobile.js or sw.js not found');
      const urls = [...files].sort().map((f) => `/static/map/dist/${f}`);
      sw.code = sw.code.replaceAll('__MOBILE_BUNDLE__', JSON.stringify(urls));
    },
  };
}

export default defineConfig({
  base: '/static/map/dist/',
  publicDir: false,
  plugins: [copyAssets(), thirdPartyLicenses(), mobileShell()],
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
        track: resolve(here, 'src/track.js'),
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

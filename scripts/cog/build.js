// Builds protocol/data/cog.txt, Maillage's compact copy of the Code officiel géographique,
// from the JSON files of the npm package @etalab/decoupage-administratif.
// Usage: node build.js PACKAGE_DIR OUT_FILE COG_YEAR  (called by regenerate.sh)
'use strict';
const fs = require('fs');
const path = require('path');

const [pkgDir, outFile, cogYear] = process.argv.slice(2);
const read = (name) => JSON.parse(fs.readFileSync(path.join(pkgDir, 'data', name), 'utf8'));
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));

// The 101 départements are those of metropolitan France and the five DROM; the collectivités
// d'outre-mer (975, 977, 978, 98x) are outside the sector's national statistics.
const departements = read('departements.json').filter((d) => d.zone === 'metro' || d.zone === 'drom');
const depCodes = new Set(departements.map((d) => d.code));
const regionCodes = new Set(departements.map((d) => d.region));
const regions = read('regions.json').filter((r) => regionCodes.has(r.code));
const communes = read('communes.json').filter((c) => depCodes.has(c.departement));

const byCode = (a, b) => (a.code < b.code ? -1 : a.code > b.code ? 1 : 0);
const suffix = (code, dep) => {
  if (!code.startsWith(dep)) throw new Error(`commune ${code} does not start with its département ${dep}`);
  return code.slice(dep.length);
};

const current = new Set();
const lines = [];
lines.push(`# Code officiel géographique ${cogYear}: régions, départements, communes and arrondissements municipaux.`);
lines.push(`# Source: npm package ${pkg.name} ${pkg.version} (Etalab, data/regions.json, departements.json, communes.json).`);
lines.push('# Regenerate with scripts/cog/regenerate.sh; do not edit by hand.');
lines.push('# R<TAB>region<TAB>name');
lines.push('# D<TAB>departement<TAB>region<TAB>name');
lines.push('# C<TAB>departement<TAB>suffixes of current commune and arrondissement codes (code = departement + suffix)');
lines.push('# F<TAB>departement<TAB>code=current commune code, for former communes (déléguées, associées) now in that departement');
lines.push(`Y\t${cogYear}`);
for (const r of regions.sort(byCode)) lines.push(`R\t${r.code}\t${r.nom}`);
for (const d of departements.sort(byCode)) lines.push(`D\t${d.code}\t${d.region}\t${d.nom}`);
for (const d of departements) {
  const own = communes
    .filter((c) => c.departement === d.code && (c.type === 'commune-actuelle' || c.type === 'arrondissement-municipal'))
    .sort(byCode);
  own.forEach((c) => current.add(c.code));
  lines.push(`C\t${d.code}\t${own.map((c) => suffix(c.code, d.code)).join(' ')}`);
}
for (const d of departements) {
  const former = communes
    .filter((c) => c.departement === d.code && (c.type === 'commune-deleguee' || c.type === 'commune-associee'))
    .filter((c) => !current.has(c.code))
    .sort(byCode);
  // A former commune may be listed twice (déléguée of two successive mergers): keep one.
  const seen = new Set();
  const pairs = [];
  for (const c of former) {
    if (seen.has(c.code)) continue;
    seen.add(c.code);
    pairs.push(`${c.code}=${c.chefLieu}`);
  }
  if (pairs.length > 0) lines.push(`F\t${d.code}\t${pairs.join(' ')}`);
}
fs.writeFileSync(outFile, lines.join('\n') + '\n');
console.log(`wrote ${outFile}: ${regions.length} régions, ${departements.length} départements, ${current.size} communes`);

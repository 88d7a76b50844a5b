// Writes data/population.txt: the legal population of every current commune and municipal
// arrondissement, from Etalab's @etalab/decoupage-administratif (data/communes.json, Licence
// Ouverte). The simulator places structures in communes with probability proportional to it.
// Usage: node scripts/population.js <package dir> <out file>
// Paris, Lyon and Marseille are left out as communes: their arrondissements carry the population.
const fs = require("fs");
const path = require("path");
const [pkg, out] = process.argv.slice(2);
const meta = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8"));
const communes = JSON.parse(fs.readFileSync(path.join(pkg, "data", "communes.json"), "utf8"));
const withArrondissements = new Set(["75056", "69123", "13055"]);
const rows = communes
  .filter((c) => c.type === "commune-actuelle" || c.type === "arrondissement-municipal")
  .filter((c) => !withArrondissements.has(c.code) && Number.isInteger(c.population) && c.population > 0)
  .map((c) => `${c.code}\t${c.population}`)
  .sort();
const header = [
  `# Legal population of communes and municipal arrondissements (Paris, Lyon, Marseille by arrondissement).`,
  `# Source: npm package @etalab/decoupage-administratif ${meta.version} (Etalab, data/communes.json), Licence Ouverte.`,
  `# Regenerate with: npm install @etalab/decoupage-administratif@${meta.version} && node simulations/scripts/population.js node_modules/@etalab/decoupage-administratif simulations/data/population.txt`,
  `# code<TAB>population`,
];
fs.writeFileSync(out, header.concat(rows).join("\n") + "\n");
console.log(`${rows.length} communes`);

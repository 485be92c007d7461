// Errors of the patch package. A ModelError names what in the model is wrong (a
// function, a reference, a section) and why; a PackageError adds the file. Both are
// errors the user can act on (the CLI shows them as one line, exit code 1).

export class ModelError extends Error {
  constructor(
    readonly subject: string,
    readonly reason: string,
  ) {
    super(`${subject}: ${reason}`);
    this.name = "ModelError";
  }
}

export class PackageError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = "PackageError";
  }
}

// The open ELF files, by handle. Other areas (symbol index, relocation engine) take
// an ELF handle and look the file up here.
import { HandleTable } from "../handles";
import { ElfFile } from "./file";

export const elfFiles = new HandleTable<ElfFile>();

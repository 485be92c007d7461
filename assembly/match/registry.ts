// The open symbol indexes, by handle (see assembly/handles.ts).
import { HandleTable } from "../handles";
import { SymIndex } from "./symbols";

export const symIndexes = new HandleTable<SymIndex>();

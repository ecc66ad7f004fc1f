import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Logits of every position; prints {\"ids\":[...],\"logits\":[[...],...]} (with --hidden, {\"ids\",\"hidden\"}).")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json, safetensors) or GGUF file.") var model: String
    @Option(help: "Comma-separated token ids.") var ids: String
    @Option(help: "Write the JSON to this file instead of stdout.") var out: String?
    @Flag(help: "Print the hidden states after the final norm (what /v1/embeddings pools) instead of logits.") var hidden = false
    @OptionGroup var threads: ThreadOption
    func run() throws {
        if let out { try FileIO.requireReplaceable(out) }  // before any work
        try threads.apply()
        let loaded = try LoadedModel(directory: model)
        let ids = try parseIDs(ids)
        try loaded.model.checkTokens(ids)
        if hidden {
            let states = try loaded.model.hiddenStates(ids.map(Int32.init))
            let obj: [String: Any] = ["ids": ids, "hidden": states.map { $0.map(Double.init) }]
            if let out { try FileIO.writeAtomically(out, try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) } else { try printJSON(obj) }
            return
        }
        let logits = try loaded.model.logits(ids.map(Int32.init))
        for (i, row) in logits.enumerated() {
            try row.withUnsafeBufferPointer { try loaded.model.checkFinite($0, position: i) { ids[0...i].map(Int32.init) } }
        }
        let obj: [String: Any] = ["ids": ids, "logits": logits.map { $0.map(Double.init) }]
        if let out {
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            try FileIO.writeAtomically(out, data)
        } else {
            try printJSON(obj)
        }
    }
}

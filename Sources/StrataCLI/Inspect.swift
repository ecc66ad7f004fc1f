import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model folder's inventory (from headers, no weights read).")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json, safetensors) or GGUF file.") var model: String
    @Option(help: "For a folder with config.json only: the weight dtype (\(DType.names)); default the config's torch_dtype / dtype.") var dtype: String?
    @Flag(help: "JSON output.") var json = false
    func run() throws {
        let dt = try parseDType(dtype)
        let folder = try ModelFolder(path: model)
        if dt != nil || folder.checkpoint == nil {
            // config only: the sizes the planner derives from config.json
            let inv = try PlannerInventory.build(folder: folder, workload: Workload(batch: 1, promptTokens: 1, outputTokens: 1), dtype: dt)
            let spec = folder.spec
            let d = inv.weightDType ?? .f32
            // the planner's inventory leaves out an untied token embedding (cold: read a row a token)
            let embedding = spec.tiedEmbeddings ? 0 : spec.vocabSize * spec.hiddenSize
            let params = inv.layerParams.reduce(0, +) + inv.headParams + embedding
            let bytes = inv.weightBytes + d.bytes(elements: embedding)
            if json {
                try printJSON(["model": model, "architecture": spec.architecture, "source": "config.json", "dtype": d.rawValue,
                               "layers": inv.layers, "parameters": params, "weight_bytes": bytes,
                               "kv_bytes_per_token": inv.kvBytesPerToken])
            } else {
                print("\(model): \(spec.architecture), config.json only (no weights): \(d.rawValue), \(inv.layers) layers, "
                      + "\(String(format: "%.1f", Double(params) / 1e6)) M parameters, \(formatBytes(bytes)) of weights, "
                      + "KV \(formatBytes(inv.kvBytesPerToken)) per token")
            }
            return
        }
        let s = try CheckpointSummary(folder: folder)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(s), as: UTF8.self))
        } else {
            print(s.text, terminator: "")
        }
    }
}

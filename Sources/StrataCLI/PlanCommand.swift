import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Plan weights and KV across RAM and disk under a RAM budget, and predict the speed.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json; safetensors headers unless --dtype) or GGUF file.") var model: String
    @Option(name: .customLong("ram-budget"), help: "RAM budget, e.g. 2GiB.") var ramBudget: String
    @Option(help: "Batch size, or auto.") var batch: String = "auto"
    @Option(name: .customLong("prompt-tokens")) var promptTokens = 512
    @Option(name: .customLong("output-tokens")) var outputTokens = 128
    @Option(help: "throughput or latency.") var objective: String = "throughput"
    @Option(help: "text, json or markdown.") var format: String = "text"
    @Option(help: "Write the placement strip and budget curve as SVG.") var svg: String?
    @Option(help: "Plan from config.json alone with this weight dtype (\(DType.names)): no weights needed.") var dtype: String?
    @Option(help: "Write the plan JSON (for generate --plan).") var out: String?
    @OptionGroup var threads: ThreadOption
    @OptionGroup var kv: KVTypeOption

    func run() throws {
        // outputs are checked before any work (a FIFO or device named as one is refused)
        for path in [out, svg].compactMap({ $0 }) { try FileIO.requireReplaceable(path) }
        try threads.apply()
        guard let budget = parseByteSize(ramBudget) else { throw ValidationError("--ram-budget: '\(ramBudget)' is not a size") }
        guard let obj = PlanRequest.Objective(rawValue: objective) else { throw ValidationError("--objective must be throughput or latency") }
        let b: Int? = batch == "auto" ? nil : Int(batch)
        if batch != "auto" && (b == nil || b! < 1 || b! > 4096) { throw ValidationError("--batch must be auto or an integer in 1...4096") }
        try checkFlag(promptTokens, 1...(1 << 24), "--prompt-tokens")
        try checkFlag(outputTokens, 1...(1 << 24), "--output-tokens")
        let dt = try parseDType(dtype)
        guard ["text", "json", "markdown"].contains(format) else { throw ValidationError("--format must be text, json or markdown") }
        let profile = try loadProfile()
        let workload = Workload(batch: b ?? 1, promptTokens: promptTokens, outputTokens: outputTokens)
        let kvType = try kv.type(ModelFolder(path: model).spec)
        let inv = try PlannerInventory.build(directory: model, workload: workload, dtype: dt, kvType: kvType)
        let plan = try Planner.plan(inv: inv, profile: profile, request: PlanRequest(budgetBytes: budget, batch: b, promptTokens: promptTokens,
                                                                                    outputTokens: outputTokens, objective: obj,
                                                                                    bf16Products: Kernels.prefillUsesBF16Products(dtype: inv.weightDType ?? .f32),
                                                                                    exactActivations: Kernels.activations == .f32, kvType: kvType))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let out { try FileIO.writeAtomically(out, enc.encode(plan)) }
        if let svg { try FileIO.writeAtomically(svg, Data(PlanReport.svg(plan, inv: inv).utf8)) }
        switch format {
        case "json": print(String(decoding: try enc.encode(plan), as: UTF8.self))
        default:
            print(PlanReport.text(plan, inv: inv, profile: profile, markdown: format == "markdown"), terminator: "")
            let folder = try ModelFolder(path: model)
            let rows = StorageAdvice.compare(folder: folder, inv: inv, profile: profile, request: plan.request)
            print(format == "markdown" ? "\n## Other storage types at this budget (predicted)\n" : "\nOther storage types at this budget (predicted)")
            print(StorageAdvice.text(rows, markdown: format == "markdown"), terminator: "")
        }
    }
}

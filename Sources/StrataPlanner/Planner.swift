import Foundation
import StrataTensor

/// The planner: searches batch size, prefetch depth and the resident set under the budget.
public enum Planner {
    /// Plans `request` for `inv` on `profile`. Pure: no I/O.
    public static func plan(inv: PlannerInventory, profile: HardwareProfile, request: PlanRequest, curve: Bool = true) throws -> Plan {
        var cost = CostModel(profile: profile)
        cost.dtype = inv.weightDType
        cost.dtypeMix = CostModel.mix(inv.layerDTypeBytes.mapValues(Double.init))
        cost.bf16Products = request.bf16Products ?? false
        cost.exactActivations = request.exactActivations ?? false
        // a KV block of every layer in the planned KV type (the run's PagedKVCache.bytesPerBlock)
        let perBlock = inv.kvBytesPerToken * request.blockSize
        let blocksPerSeq = (request.promptTokens + request.outputTokens + request.blockSize - 1) / request.blockSize + 1
        let batches: [Int] = request.batch.map { [$0] } ?? Array(Set([1, 2, 4, 8, 16, 32, 64, 128, 256].filter { $0 <= request.maxBatch })).sorted()
        let maxLayer = inv.layerBytes.max() ?? 0
        let allLayers = inv.layerBytes.reduce(0, +)
        // a mixture that does not fit whole reads its experts through the expert cache
        if let moe = inv.moe, allLayers > request.budgetBytes - inv.fixedBytes - inv.otherBytes - blocksPerSeq * perBlock {
            return try planExperts(inv: inv, moe: moe, cost: cost, request: request)
        }
        var best: (plan: Plan, score: Double)? = nil
        // the fill-the-budget rule's placement (first layers resident, prefetch 1) per batch, as predicted
        var rulePrediction: [Int: Prediction] = [:]
        var minimum = Int.max
        for b in batches {
            // prefetch 0 leaves the disk idle while a layer computes and its reads unqueued: measured
            // 1.2 GB/s against 1.9 GB/s with prefetch 1 on the same placement (docs/benchmarks.md),
            // a loss the cost model's sum does not capture, so streaming plans read ahead
            for k in 1...max(1, request.maxPrefetch) {
                let kvBytes = b * blocksPerSeq * perBlock
                var left = request.budgetBytes - inv.fixedBytes - inv.otherBytes - kvBytes
                var staging = 0
                var arrangements: [(name: String, streamed: [Int])] = [("in order", [])]
                if allLayers > left {
                    staging = min(k + 1, inv.layers) * maxLayer
                    left -= staging
                    // the rule: keep the first layers resident while they fit; the rest stream
                    var resident = 0, inOrder: [Int] = []
                    for (i, lb) in inv.layerBytes.enumerated() { if resident + lb <= left { resident += lb } else { inOrder.append(i) } }
                    arrangements = [("in order", inOrder)]
                    // the same number of resident layers spread evenly between the streamed ones:
                    // each resident layer computes while the next streamed one is read, so the
                    // disk does not idle once the slots are full (CostModel.pipeline). Layer 0 stays
                    // resident, so a fresh process's first pass computes while the first read runs
                    let r = inv.layers - inOrder.count
                    if r > 0 && !inOrder.isEmpty {
                        let keep = Set((0..<r).map { min(inv.layers - 1, Int(Double($0) * Double(inv.layers) / Double(r))) })
                        let spread = (0..<inv.layers).filter { !keep.contains($0) }
                        if keep.count == r && allLayers - spread.reduce(0, { $0 + inv.layerBytes[$1] }) <= left {
                            arrangements.append(("spread", spread))
                        }
                    }
                }
                let need = inv.fixedBytes + inv.otherBytes + kvBytes + min(staging > 0 ? staging : allLayers, allLayers)
                minimum = min(minimum, inv.fixedBytes + inv.otherBytes + blocksPerSeq * perBlock + min(2 * maxLayer, allLayers))
                if left < 0 || need > request.budgetBytes { continue }
                for (arrangement, streamed) in arrangements {
                    let residentLayers = allLayers - streamed.reduce(0) { $0 + inv.layerBytes[$1] }
                    let peak = inv.fixedBytes + inv.otherBytes + kvBytes + staging + residentLayers
                    let pred = cost.predict(inv: inv, batch: b, promptTokens: request.promptTokens, outputTokens: request.outputTokens,
                                            streamed: Set(streamed), prefetch: k, peakResident: peak)
                    // latency: one sequence's end-to-end rate, output tokens over (time to first token
                    // + the remaining decode steps)
                    let score = request.objective == .throughput ? pred.aggregateTokensPerSecond
                        : Double(request.outputTokens) / (pred.timeToFirstTokenSeconds + Double(max(0, request.outputTokens - 1)) * pred.decodeStepSeconds)
                    if k == 1 && arrangement == "in order" { rulePrediction[b] = pred }
                    // latency: a larger batch must be clearly better (1%) to win over a smaller one
                    let margin = request.objective == .latency ? 1.01 : 1 + 1e-9
                    if best == nil || score > best!.score * margin {
                        let binding: String
                        if streamed.isEmpty { binding = b == batches.last ? "batch limit (\(b))" : "none: everything fits in RAM" }
                        else { binding = "RAM budget: \(streamed.count) of \(inv.layers) layers stream from disk (resident layers \(arrangement))" }
                        // the run's ledger lines (LedgerLine), predicted
                        var lines = inv.fixedLines.isEmpty ? [LedgerLine.runtime: inv.fixedBytes] : inv.fixedLines
                        lines[.otherWeights, default: 0] += inv.otherBytes
                        lines[.kv, default: 0] += kvBytes
                        lines[.staging, default: 0] += staging
                        lines[.layerWeights, default: 0] += residentLayers
                        let ledger = LedgerLine.named(lines)
                        best = (Plan(model: inv.name, request: request, batch: b, prefetchDepth: streamed.isEmpty ? 0 : k, streamedLayers: streamed,
                                     kvBlocksRAM: b * blocksPerSeq, kvBlocksDisk: 0, blockSize: request.blockSize, ledger: ledger, prediction: pred,
                                     binding: binding, budgetCurve: [], moreRAM: ""), score)
                    }
                }
            }
        }
        guard var plan = best?.plan else { throw PlanError.budgetTooSmall(budget: request.budgetBytes, minimum: minimum) }
        if let rule = rulePrediction[plan.batch] {
            plan.ruleTokensPerSecond = request.objective == .throughput ? rule.aggregateTokensPerSecond : rule.decodeTokensPerSecond
            let mine = request.objective == .throughput ? plan.prediction.aggregateTokensPerSecond : plan.prediction.decodeTokensPerSecond
            plan.versusRule = String(format: "the fill-the-budget rule (first layers resident, prefetch 1) at batch %d: %.3f tokens/s predicted; this plan %.3f (%+.1f%%)",
                                     plan.batch, plan.ruleTokensPerSecond, mine, (mine / plan.ruleTokensPerSecond - 1) * 100)
        }
        if curve {
            // predicted tokens/s from a quarter of the model size to everything in RAM
            let full = inv.fixedBytes + inv.otherBytes + allLayers + plan.batch * blocksPerSeq * perBlock
            let lo = max(minimum, inv.weightBytes / 4)
            var points: [[Double]] = []
            for i in 0...8 {
                let bgt = lo + (full - lo) * i / 8
                var r = request
                r.budgetBytes = bgt
                r.batch = plan.batch
                if let p = try? Planner.plan(inv: inv, profile: profile, request: r, curve: false) {
                    points.append([Double(bgt), request.objective == .throughput ? p.prediction.aggregateTokensPerSecond : p.prediction.decodeTokensPerSecond])
                }
            }
            plan.budgetCurve = points
            var more = request
            more.budgetBytes = request.budgetBytes + (1 << 30)
            if let p = try? Planner.plan(inv: inv, profile: profile, request: more, curve: false) {
                plan.moreRAM = String(format: "+1 GiB of RAM: %.2f -> %.2f tokens/s aggregate (%d -> %d layers streamed)",
                                      plan.prediction.aggregateTokensPerSecond, p.prediction.aggregateTokensPerSecond,
                                      plan.streamedLayers.count, p.streamedLayers.count)
            }
        }
        return plan
    }

    /// A mixture of experts under a budget that does not hold it: the dense part resident when it
    /// fits beside one token's experts (else streamed layer by layer, as a dense model's), the
    /// rest of the budget as expert-cache slots. A decode step is the dense part's and the active
    /// experts' compute (the cost model over each layer's dense part plus k experts) plus the
    /// missed experts read from disk, one after the other (the reads of a layer start when its
    /// routing is known); the hit rate comes from a routing model (`PlannerMoE.steadyHitRate`:
    /// uniform, the worst case, unless a Zipf law is given), with the cache starting empty.
    static func planExperts(inv: PlannerInventory, moe: PlannerMoE, cost: CostModel, request: PlanRequest) throws -> Plan {
        let perBlock = inv.kvBytesPerToken * request.blockSize
        let blocksPerSeq = (request.promptTokens + request.outputTokens + request.blockSize - 1) / request.blockSize + 1
        let b = request.batch ?? 1
        let kvBytes = b * blocksPerSeq * perBlock
        let dense = moe.denseLayerBytes, denseTotal = dense.reduce(0, +), maxDense = dense.max() ?? 0
        let minSlots = moe.perToken
        let staging = 2 * maxDense
        let minimum = inv.fixedBytes + inv.otherBytes + blocksPerSeq * perBlock + min(staging, denseTotal) + minSlots * moe.slotBytes
        var left = request.budgetBytes - inv.fixedBytes - inv.otherBytes - kvBytes
        var streamed: [Int] = []
        var stagingUsed = 0, resident = denseTotal
        if denseTotal + minSlots * moe.slotBytes > left {
            stagingUsed = staging
            left -= staging
            resident = 0
            for (i, d) in dense.enumerated() {
                if resident + d + minSlots * moe.slotBytes <= left { resident += d } else { streamed.append(i) }
            }
        }
        left -= resident
        guard left >= minSlots * moe.slotBytes, request.budgetBytes >= minimum else {
            throw PlanError.budgetTooSmall(budget: request.budgetBytes, minimum: minimum)
        }
        let totalExperts = moe.experts * moe.sparseLayers.filter { $0 }.count
        let slots = min(totalExperts, left / moe.slotBytes)
        // the steps of the run: prefill passes of up to 512 prompt rows, then decode steps of b rows
        let totalPrompt = b * request.promptTokens
        var passes: [Int] = []
        var rowsLeft = totalPrompt
        while rowsLeft > 0 { passes.append(min(512, rowsLeft)); rowsLeft -= passes.last! }
        let decodeSteps = max(0, request.outputTokens - 1)
        let pins = passes.map { moe.distinctExperts(tokens: $0) } + [Double](repeating: moe.distinctExperts(tokens: b), count: decodeSteps)
        let rates = moe.hitRates(slots: slots, pins: pins, from: passes.count)
        let hit = decodeSteps > 0 ? rates.later : rates.all
        let prefillHit = moe.hitRates(slots: slots, pins: Array(pins.prefix(passes.count)), from: 0).all
        // the active model: each layer's dense part and the k experts a token runs
        var active = inv
        active.moe = nil
        active.layerBytes = zip(dense, moe.sparseLayers).map { $0 + ($1 ? moe.perToken * moe.expertBytes : 0) }
        active.layerParams = zip(moe.denseLayerParams, moe.sparseLayers).map { $0 + ($1 ? moe.perToken * moe.expertParams : 0) }
        let peak = inv.fixedBytes + inv.otherBytes + kvBytes + stagingUsed + resident + slots * moe.slotBytes
        // a token's bytes by type: the dense parts', and k experts' in the experts' type
        var cost = cost
        var mix = inv.layerDTypeBytes.mapValues(Double.init)
        if let d = moe.expertDType ?? inv.weightDType {
            mix[d.rawValue, default: 0] += Double(moe.perToken * moe.expertBytes) * Double(moe.sparseLayers.filter { $0 }.count)
        }
        cost.dtypeMix = CostModel.mix(mix)
        var pred = cost.predict(inv: active, batch: b, promptTokens: request.promptTokens, outputTokens: request.outputTokens,
                                streamed: Set(streamed), prefetch: 1, peakResident: peak)
        // missed experts are read scattered, several at once (the profile's figure for that, else the sequential one)
        let sparse = Double(moe.sparseLayers.filter { $0 }.count)
        let disk = cost.profile.diskScatteredReadBytesPerSecond.flatMap { $0 > 0 ? $0 : nil } ?? cost.profile.diskReadBytesPerSecond
        // a decode step of b rows: the distinct experts they chose, the missed ones read
        let distinct = moe.distinctExperts(tokens: b)
        let stepMissBytes = distinct * sparse * (1 - hit) * Double(moe.expertBytes)
        // one expert's compute: the step's compute times its share of the active model's bytes
        let expertSeconds = pred.decodeStepSeconds * Double(moe.expertBytes) / max(1, Double(active.layerBytes.reduce(0, +)))
        let stepWait = PlannerMoE.exposedReadSeconds(experts: distinct, missRate: 1 - hit, readSeconds: Double(moe.expertBytes) / disk,
                                                     computeSeconds: expertSeconds) * sparse
        pred.decodeStepSeconds += stepWait
        pred.diskReadSeconds += stepMissBytes / disk
        pred.decodeTokensPerSecond = 1 / pred.decodeStepSeconds
        // prefill: each pass reads the distinct experts it misses
        var prefill = pred.prefillTokensPerSecond > 0 ? Double(totalPrompt) / pred.prefillTokensPerSecond : 0
        let prefillMiss = passes.reduce(0.0) { $0 + moe.distinctExperts(tokens: $1) } * sparse * (1 - prefillHit) * Double(moe.expertBytes)
        prefill += prefillMiss / disk
        pred.timeToFirstTokenSeconds += moe.distinctExperts(tokens: passes.first ?? 0) * sparse * (1 - prefillHit) * Double(moe.expertBytes) / disk
        pred.prefillTokensPerSecond = prefill > 0 ? Double(totalPrompt) / prefill : 0
        let steps = Double(max(0, request.outputTokens - 1))
        pred.aggregateTokensPerSecond = Double(b * max(1, request.outputTokens)) / (prefill + steps * pred.decodeStepSeconds)
        pred.diskBytesRead += Int(prefillMiss + steps * stepMissBytes)
        pred.expertHitRate = rates.all
        if stepWait > pred.computeSeconds { pred.bottleneck = "disk" }
        var lines = inv.fixedLines.isEmpty ? [LedgerLine.runtime: inv.fixedBytes] : inv.fixedLines
        lines[.otherWeights, default: 0] += inv.otherBytes
        lines[.kv, default: 0] += kvBytes
        lines[.staging, default: 0] += stagingUsed
        lines[.layerWeights, default: 0] += resident
        lines[.expertCache, default: 0] += slots * moe.slotBytes
        var plan = Plan(model: inv.name, request: request, batch: b, prefetchDepth: streamed.isEmpty ? 0 : 1, streamedLayers: streamed,
                        kvBlocksRAM: b * blocksPerSeq, kvBlocksDisk: 0, blockSize: request.blockSize, ledger: LedgerLine.named(lines), prediction: pred,
                        binding: String(format: "RAM budget: %d expert slots of %d experts (%.0f%% hits predicted; routing: %@), %d of %d layers' dense parts streamed",
                                        slots, totalExperts, 100 * rates.all, moe.routingSource as NSString, streamed.count, inv.layers),
                        budgetCurve: [], moreRAM: "")
        plan.expertSlots = slots
        let perGiB = (1 << 30) / moe.slotBytes
        plan.moreRAM = String(format: "+1 GiB of RAM: %d more expert slots, %.0f%% -> %.0f%% hits in steady state", perGiB,
                              100 * moe.steadyHitRate(slots: slots), 100 * moe.steadyHitRate(slots: slots + perGiB))
        return plan
    }
}

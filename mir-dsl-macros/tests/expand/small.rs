// The input of the expansion snapshot: a small protocol with a handler of each kind and a part.
// Expanded by `src/snapshot.rs`; the result is `small.expanded.rs` beside this file.

#[protocol(parts(timeouts))]
impl Small {
    /// Two handlers of one event type: they form one group and run in declaration order.
    #[upon(event)]
    fn count(&mut self, ctx: &mut Ctx<Self>, n: TestUint64) -> Handled {
        self.total += n.0;
        Ok(())
    }

    #[upon(event)]
    fn report(&mut self, ctx: &mut Ctx<Self>, n: TestUint64) -> Handled {
        ctx.emit(&self.app, TestString(format!("{}", n.0)));
        Ok(())
    }

    #[upon(message)]
    fn on_text(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: TestString) -> Handled {
        ctx.request(&self.crypto, SignRequest::new(vec![msg.0.into_bytes()]), Signing { from });
        Ok(())
    }

    #[upon(response)]
    fn signed(&mut self, ctx: &mut Ctx<Self>, res: SignResult, cont: Signing) -> Handled {
        Ok(())
    }

    /// The same response type with another continuation: another group.
    #[upon(response)]
    fn resigned(&mut self, ctx: &mut Ctx<Self>, res: SignResult, cont: Resigning) -> Handled {
        Ok(())
    }

    #[upon(condition)]
    fn enough(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        Ok(())
    }

    #[upon(condition, per_batch)]
    fn after_batch(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        Ok(())
    }
}

#[protocol(part = timeouts)]
impl Small {
    #[upon(event)]
    fn timeout(&mut self, ctx: &mut Ctx<Self>, t: Timeout) -> Handled {
        Ok(())
    }

    #[upon(condition)]
    fn stalled(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        Ok(())
    }
}

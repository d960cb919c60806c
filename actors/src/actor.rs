//! The one shape of every actor here: an actor is its state. Built from its arguments, the
//! state handles the actor's messages and, for a supervisor, its children's ends. [`Run`]
//! adapts that to ractor's [`Actor`] once, so each actor module holds only what is its own
//! (its messages, its state, its handlers) and none of the plumbing.

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, SpawnErr, SupervisionEvent};
use std::future::Future;
use std::marker::PhantomData;

/// What a handler returns: an error fails the actor (and tells its supervisor).
pub type Handled = Result<(), ActorProcessingErr>;

/// What [`Behaviour::start`] returns: the state, or why the actor cannot start.
pub type Started<S> = Result<S, ActorProcessingErr>;

/// Answers a request; a caller that stopped waiting is no error.
pub fn answer<T>(reply: ractor::RpcReplyPort<T>, value: T) {
    let _ = reply.send(value);
}

/// An actor's state and its handlers.
pub trait Behaviour: Sized + Send + Sync + 'static {
    type Msg: Message;
    type Args: Send + 'static;

    /// Builds the state (ractor's `pre_start`: the spawner waits for it, so keep it short and
    /// never wait on another actor here).
    fn start(
        me: ActorRef<Self::Msg>,
        args: Self::Args,
    ) -> impl Future<Output = Started<Self>> + Send;

    /// Runs once the actor is up, before its first message (the spawner does not wait).
    fn started(&mut self, _me: ActorRef<Self::Msg>) -> impl Future<Output = Handled> + Send {
        async { Ok(()) }
    }

    fn handle(
        &mut self,
        me: ActorRef<Self::Msg>,
        message: Self::Msg,
    ) -> impl Future<Output = Handled> + Send;

    /// A child started, stopped or failed. Every supervisor overrides this: ractor's default
    /// would stop the supervisor when any child ends, even one that finished normally.
    fn child(
        &mut self,
        _me: ActorRef<Self::Msg>,
        _event: SupervisionEvent,
    ) -> impl Future<Output = Handled> + Send {
        async { Ok(()) }
    }

    /// Runs when the actor stops (not when it is killed).
    fn stopped(&mut self, _me: ActorRef<Self::Msg>) -> impl Future<Output = Handled> + Send {
        async { Ok(()) }
    }
}

/// ractor's view of a [`Behaviour`].
pub struct Run<B>(PhantomData<fn() -> B>);

impl<B: Behaviour> Actor for Run<B> {
    type Msg = B::Msg;
    type State = B;
    type Arguments = B::Args;

    async fn pre_start(
        &self,
        me: ActorRef<B::Msg>,
        args: B::Args,
    ) -> Result<B, ActorProcessingErr> {
        B::start(me, args).await
    }

    async fn post_start(&self, me: ActorRef<B::Msg>, state: &mut B) -> Handled {
        state.started(me).await
    }

    async fn handle(&self, me: ActorRef<B::Msg>, message: B::Msg, state: &mut B) -> Handled {
        state.handle(me, message).await
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<B::Msg>,
        event: SupervisionEvent,
        state: &mut B,
    ) -> Handled {
        state.child(me, event).await
    }

    async fn post_stop(&self, me: ActorRef<B::Msg>, state: &mut B) -> Handled {
        state.stopped(me).await
    }
}

/// Starts an actor of behaviour `B` supervised by `parent` (no process-wide name).
pub async fn spawn_child<B: Behaviour>(
    args: B::Args,
    parent: ActorCell,
) -> Result<ActorRef<B::Msg>, SpawnErr> {
    let (actor, _) = Actor::spawn_linked(None, Run::<B>(PhantomData), args, parent).await?;
    Ok(actor)
}

/// Starts a root actor of behaviour `B`, with the handle that ends when it stops.
pub async fn spawn_root<B: Behaviour>(
    args: B::Args,
) -> Result<(ActorRef<B::Msg>, tokio::task::JoinHandle<()>), SpawnErr> {
    Actor::spawn(None, Run::<B>(PhantomData), args).await
}
